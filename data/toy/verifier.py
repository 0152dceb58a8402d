"""
A verifiable reward for the toy world's sums ("RL with verifiable rewards": a rule checks the answer, no
learned model; DeepSeek-R1's accuracy reward, Tulu 3's RLVR). A rule like this is what a user writes for a
task whose answers can be checked.

It reads the prompt as text, the way a rule for a real task would: a math prompt is one that names two
one-digit numbers ("What is 3+2? Thx!", "Add 1 and 3."); no other prompt of the world contains a digit.
The response must be the world's answer sentence (world.math_answer: "It is N.") with N the sum, exactly (surrounding
whitespace aside), and must have ended.

This is deliberately not the gold judge (data/toy/judge.py): the judge stays an evaluation-only oracle that
also scores form and every other kind. Training on the judge would leave nothing to measure with.
"""

import re

from data.toy.world import math_answer

_DIGITS = re.compile(r"\d+")


def math_operands(prompt):
    """(a, b) if the prompt is a math question (it names exactly two numbers), else None."""
    numbers = _DIGITS.findall(prompt)
    return (int(numbers[0]), int(numbers[1])) if len(numbers) == 2 else None


def math_reward(prompt, response, ended=True):
    """1.0 if the response is exactly "It is a+b." and ended, 0.0 otherwise; None where the rule does not
    apply (the prompt is not a math question). response: the decoded text without end-of-text."""
    operands = math_operands(prompt)
    if operands is None:
        return None
    return float(bool(ended) and response.strip() == math_answer(sum(operands)))
