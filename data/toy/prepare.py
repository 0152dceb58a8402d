"""
Writes the toy assistant world's data files (seconds, no network):

    python -m data.toy.prepare [--out_dir data/toy] [--seed 1337]

    sft_train.jsonl, sft_val.jsonl      demonstrations {"prompt", "response", "kind", "flaw"}, flawed
                                        at the exact rates of world.FLAWS ("flaw" is null when ideal)
    prefs_train.jsonl, prefs_val.jsonl  {"prompt", "chosen", "rejected", "kind"}: the ideal response and
                                        a worse one (REJECTED_MIX: the kind's flaws, another sentence of
                                        the world, or a malformed one) ranked by the gold judge, then
                                        PREF_LABEL_NOISE of the pairs of each kind swapped
                                        (prefs_val on the held-out eval prompts, with fresh pairs)
    rl_prompts.jsonl                    {"prompt", "kind"}: every training prompt once
    eval_prompts.jsonl                  {"prompt", "kind"}: EVAL_PER_KIND held-out prompts per kind,
                                        disjoint from every prompt in the files above
    jailbreak_prompts.jsonl             {"prompt", "kind", "wrapper"}: the held-out topic and harmful requests
                                        inside adversarial wrappers (world.JAILBREAK_WRAPPERS), evaluation only
    tune_prompts.jsonl                  {"prompt", "kind"}: TUNE_PER_KIND training prompts per kind (one wording
                                        of each of that many training cells), for choosing a setting by its
                                        gold score without looking at eval_prompts (not held out from training)
    vocab.json                          the CharTokenizer over every text the world can produce

Each kind is a quarter of every file. SFT, preference and RL prompts are drawn from the same
training prompts; sft_val uses them too, with fresh responses, so its loss measures fit to the
demonstrated behaviour. prefs_val and eval_prompts are on new prompts and measure generalisation:
the reward model's held-out accuracy and the policies' gold scores.
"""

import argparse
import os
import random

from data.formats import format_prompt, format_response, write_jsonl
from data.toy import judge, world
from tokenizer import CharTokenizer

# 8000 demonstrations, each seen ~3 times in sft_toy.py's 25,600: with 2000 (each seen ~13 times) the model
# memorised them (training loss 0.035 against 0.068 on fresh responses) and got fewer held-out cells right
N_SFT_TRAIN, N_SFT_VAL = 8000, 200
N_PREFS_TRAIN, N_PREFS_VAL = 8000, 1000
EVAL_PER_KIND = 60
# Tuning prompts are training prompts: 60 more held-out cells per kind would leave topic 40 of its 160 cells (4 per
# activity, split_prompts' minimum) to learn from, and change every table. They answer "which setting trains
# better here?", not "how well does it generalise?", and keep every choice of a setting away from the evaluation
# prompts whose table reports it.
TUNE_PER_KIND = 60
JAILBREAK_PER_REQUEST = 2  # wrappers around each held-out topic and harmful request (~230 jailbreak prompts)
# the fraction of preference pairs (of each kind) whose labels are swapped: the noise of human raters.
# Measured on the reward model of config/reward_toy.py, agreement with the gold ranking of held-out pairs:
# 4000 pairs, 10% swapped, 500 steps: 0.955; 8000 pairs, 10%, 400-500 steps: 0.955-0.974;
# 8000 pairs, 5%, 400 steps: 0.987 (the same budget learns sums: 0.97 against 0.88-0.93)
PREF_LABEL_NOISE = 0.05


def exact_labels(n, rates, rng):
    """n labels with round(rate * n) of each name in rates, the rest None, in a random order."""
    labels = [name for name, rate in rates.items() for _ in range(round(rate * n))]
    labels += [None] * (n - len(labels))
    rng.shuffle(labels)
    return labels


def demonstrations(prompts_by_kind, n, rng):
    out = []
    for kind in world.KINDS:
        for flaw in exact_labels(n // len(world.KINDS), world.FLAWS[kind], rng):
            prompt = rng.choice(prompts_by_kind[kind])
            _, slot = world.parse_prompt(prompt)
            response = world.ideal_response(kind, slot) if flaw is None else world.flawed_response(kind, slot, flaw, rng)
            out.append({"prompt": prompt, "response": response, "kind": kind, "flaw": flaw})
    rng.shuffle(out)
    return out


# what the rejected response of a preference pair is: the kind's demonstrated flaws, any other
# sentence of the world (a response the policy could move to), or a malformed one. Real preference
# data compares the policy's own samples; a reward model that has only seen each kind's own flaws
# has no opinion on the rest, and PPO finds the gap within a few iterations (answering a harmful
# request with a benign fact, say).
REJECTED_MIX = {"kind_flaw": 0.5, "other_sentence": 0.3, "malformed": 0.2}


# how a malformed rejected response is broken. Typos are what a character-level policy sampled at
# temperature 1 produces ("Use the kil command."): a reward model that had seen none scored them like the
# correct sentence, and PPO drifted into misspelling while the gold score fell. (Typos of the ideal
# response itself, the hardest pairs, were tried too: the tiny reward model could not learn them within
# its budget and fell to 0.88 gold-ranking accuracy; see data/toy/README.md.)
MALFORMED_MIX = {"typo": 0.4, "truncated": 0.2, "repeated": 0.2, "joined": 0.2}
TYPO_CHARS = "".join(sorted(set("".join(world.SENTENCES)) - set(".'[]:")))  # letters, digits, space: all in the vocab


def malformed_response(rng):
    """A response the gold judge calls malformed: a world sentence with a typo (a character dropped,
    doubled or replaced), cut short, said twice, or two sentences joined."""
    a, b = rng.sample(sorted(world.SENTENCES), 2)
    how = rng.choices(list(MALFORMED_MIX), weights=list(MALFORMED_MIX.values()))[0]
    if how == "typo":
        i = rng.randrange(len(a) - 1)  # never the final full stop: the typo is inside the sentence
        edit = rng.choice(("drop", "double", "replace"))
        if edit == "drop":
            return a[:i] + a[i + 1:]
        if edit == "double":
            return a[:i] + a[i] + a[i:]
        return a[:i] + rng.choice(TYPO_CHARS.replace(a[i], "")) + a[i + 1:]
    if how == "truncated":
        return a[:rng.randrange(1, len(a) - 1)]
    return f"{a} {a}" if how == "repeated" else f"{a} {b}"


def preference_pairs(prompts_by_kind, n, rng):
    out = []
    for kind in world.KINDS:
        flaws, rates = zip(*world.FLAWS[kind].items())
        for noisy in exact_labels(n // len(world.KINDS), {True: PREF_LABEL_NOISE}, rng):
            prompt = rng.choice(prompts_by_kind[kind])
            _, slot = world.parse_prompt(prompt)
            a = world.ideal_response(kind, slot)
            source = rng.choices(list(REJECTED_MIX), weights=list(REJECTED_MIX.values()))[0]
            if source == "kind_flaw":
                b = world.flawed_response(kind, slot, rng.choices(flaws, weights=rates)[0], rng)
            elif source == "other_sentence":
                b = rng.choice(sorted(world.SENTENCES - {a}))
            else:
                b = malformed_response(rng)
            # rank by the gold judge: the ideal response always scores strictly above any other
            if judge.score(prompt, a) < judge.score(prompt, b):
                a, b = b, a
            assert judge.score(prompt, a) > judge.score(prompt, b), (prompt, a, b)
            if noisy:
                a, b = b, a
            out.append({"prompt": prompt, "chosen": a, "rejected": b, "kind": kind})
    rng.shuffle(out)
    return out


def tuning_prompts(train_prompts, n_per_kind, seed):
    """n_per_kind training cells of each kind, one random wording each, as {"prompt", "kind"} records; its own
    random stream, so every other file is the same with or without it."""
    rng = random.Random(seed)
    cells = {}  # cell -> its training wordings, in the order train_prompts lists them
    for p in train_prompts:
        cells.setdefault(world.PROMPTS[p][2], []).append(p)
    out = []
    for kind in world.KINDS:
        kind_cells = [c for c in cells if world.CELLS[c][0] == kind]
        out += [{"prompt": rng.choice(cells[c]), "kind": kind} for c in rng.sample(kind_cells, n_per_kind)]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    rng = random.Random(args.seed)

    train_prompts, eval_prompts = world.split_prompts(EVAL_PER_KIND, seed=args.seed)
    by_kind = {k: [p for p in train_prompts if world.parse_prompt(p)[0] == k] for k in world.KINDS}
    eval_by_kind = {k: [p for p in eval_prompts if world.parse_prompt(p)[0] == k] for k in world.KINDS}
    rl = [{"prompt": p, "kind": world.parse_prompt(p)[0]} for p in train_prompts]
    rng.shuffle(rl)
    files = {
        "sft_train.jsonl": demonstrations(by_kind, N_SFT_TRAIN, rng),
        "sft_val.jsonl": demonstrations(by_kind, N_SFT_VAL, rng),
        "prefs_train.jsonl": preference_pairs(by_kind, N_PREFS_TRAIN, rng),
        # on the held-out prompts: the reward model's accuracy there is what PPO's evaluation relies on
        "prefs_val.jsonl": preference_pairs(eval_by_kind, N_PREFS_VAL, rng),
        "rl_prompts.jsonl": rl,
        "eval_prompts.jsonl": [{"prompt": p, "kind": world.parse_prompt(p)[0]} for p in eval_prompts],
        # its own random stream: the files above are the same with or without it
        "jailbreak_prompts.jsonl": world.jailbreak_prompts(eval_prompts, JAILBREAK_PER_REQUEST, seed=args.seed + 1),
        "tune_prompts.jsonl": tuning_prompts(train_prompts, TUNE_PER_KIND, seed=args.seed + 2),
    }
    for name, records in files.items():
        write_jsonl(os.path.join(args.out_dir, name), records)
        print(f"{name:20s} {len(records):5d} records")

    # every text the world can produce, in the template, so no sampled character is ever unknown
    texts = [format_prompt(p) for p in world.PROMPTS] + [format_response(r) for r in world.SENTENCES]
    tokenizer = CharTokenizer.from_texts(texts)
    for r in files["jailbreak_prompts.jsonl"]:  # the wrappers add no character: the vocabulary stays the training text's
        tokenizer.encode(format_prompt(r["prompt"]))
    tokenizer.save(os.path.join(args.out_dir, "vocab.json"))
    longest = max(len(format_prompt(p)) for p in world.PROMPTS) + 1 + max(len(r) for r in world.SENTENCES)
    print(f"vocab.json: {tokenizer.vocab_size} ids; any prompt + response is at most {longest} characters "
          f"(+1 for <end>); {len(train_prompts)} training and {len(eval_prompts)} eval prompts")


if __name__ == "__main__":
    main()
