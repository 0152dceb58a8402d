"""
The exercise checkers of the notebooks: each compares the learner's function with the project's own on
random inputs, prints "correct", "not implemented yet" or the first mismatch, and returns True, None or
False. Nothing here re-implements an algorithm: the reference is always the project's function.

    from notebooks.checkers import check_compute_gae
    check_compute_gae(my_compute_gae)

tests/test_notebooks.py checks that every checker accepts the project's function and rejects a wrong one.
"""

import random

import numpy as np
import torch


def _call(fn, *args):
    """Run the learner's function; (True, output), or (False, None) after printing why it could not run."""
    try:
        return True, fn(*args)
    except NotImplementedError:
        print("not implemented yet")
    except Exception as e:  # noqa: BLE001 -- any error in the learner's code is a result to report
        print(f"your function raised {type(e).__name__}: {e}")
    return False, None


def _verdict(mismatch):
    """mismatch: None (all agreed) or a message. Prints and returns True / False."""
    if mismatch is None:
        print("correct")
        return True
    print(f"mismatch: {mismatch}")
    return False


def _compare(name, yours, ours, atol=1e-5):
    """None if the tensors agree, else a message naming the first disagreeing entry."""
    yours = torch.as_tensor(yours).detach().float()
    ours = torch.as_tensor(ours).detach().float()
    if yours.shape != ours.shape:
        return f"{name} has shape {tuple(yours.shape)}, expected {tuple(ours.shape)}"
    bad = ~torch.isclose(yours, ours, atol=atol, rtol=1e-4)
    if bad.any():
        i = tuple(int(j) for j in bad.nonzero()[0])
        return f"{name}{list(i)} = {yours[i].item():.6g}, expected {ours[i].item():.6g}"
    return None


def _ragged_mask(B, T, g):
    """(B, T) float mask with a random length 1..T per row, as after a response's end-of-text."""
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T  # one full row, as a response that never ended
    return (torch.arange(T)[None] < lengths[:, None]).float()


# ----------------------------------------------------------------------------------------------------
# 01_rl_basics: the Q-learning and SARSA updates, replayed on the transitions of the project's own runs

def _recorded_run(method, n_episodes, alpha, gamma, epsilon, seed):
    """Run rl_basics.td_control's `method` on CliffWalking, recording every transition it makes.
    Returns (its final Q, [(s, a, r, s_next, terminated), ...])."""
    from rl_basics.envs import CliffWalking

    class RecordingCliffWalking(CliffWalking):
        def step(self, a):
            s = self.s
            s_next, r, terminated, truncated, info = super().step(a)
            self.transitions.append((s, a, r, s_next, terminated))
            return s_next, r, terminated, truncated, info

    env = RecordingCliffWalking()
    env.transitions = []
    Q, _ = method(env, n_episodes, alpha, gamma, epsilon, seed)
    return Q, env.transitions


def _check_td_update(update, method, with_next_action, seed):
    rng = random.Random(seed)
    alpha, gamma = rng.choice([0.5, 0.1, 0.3]), rng.choice([1.0, 0.9])
    Q_ours, transitions = _recorded_run(method, 30, alpha, gamma, 0.1, seed)
    # Replaying the same transitions in the same order from Q = 0 must give the same final Q: the
    # actions were chosen from Q, but they are fixed now, so only the update rule is being compared.
    Q = np.zeros_like(Q_ours)
    for i, (s, a, r, s_next, terminated) in enumerate(transitions):
        args = (Q, s, a, r, s_next, terminated, alpha, gamma)
        if with_next_action:  # the action taken in s_next: the next recorded one (unused after a terminal step)
            a_next = transitions[i + 1][1] if i + 1 < len(transitions) else 0
            args = (Q, s, a, r, s_next, a_next, terminated, alpha, gamma)
        ok, out = _call(update, *args)
        if not ok:
            return None
        if out is not None:
            Q = np.asarray(out, dtype=np.float64)
    if not np.allclose(Q, Q_ours, atol=1e-8):
        s, a = np.unravel_index(np.abs(Q - Q_ours).argmax(), Q.shape)
        return _verdict(f"after {len(transitions)} updates (alpha={alpha}, gamma={gamma}) Q[{s}, {a}] = "
                        f"{Q[s, a]:.6g}, expected {Q_ours[s, a]:.6g}")
    return _verdict(None)


def check_q_learning_update(update, seed=0):
    """update(Q, s, a, r, s_next, terminated, alpha, gamma) changes Q in place (or returns the new Q);
    compared with rl_basics.td_control.q_learning on CliffWalking."""
    from rl_basics.td_control import q_learning
    return _check_td_update(update, q_learning, False, seed)


def check_sarsa_update(update, seed=0):
    """update(Q, s, a, r, s_next, a_next, terminated, alpha, gamma) changes Q in place (or returns it);
    compared with rl_basics.td_control.sarsa on CliffWalking."""
    from rl_basics.td_control import sarsa
    return _check_td_update(update, sarsa, True, seed)


# ----------------------------------------------------------------------------------------------------
# 02_sft: the loss mask and the per-token loss

def check_build_example(build_example, seed=0):
    """build_example(prompt_ids, response_ids, eot_id) -> (inputs, labels), compared with sft.build_example."""
    from sft import build_example as ours
    rng = random.Random(seed)
    for _ in range(20):
        prompt = [rng.randrange(2, 60) for _ in range(rng.randint(1, 12))]
        response = [rng.randrange(2, 60) for _ in range(rng.randint(0, 8))]
        ok, out = _call(build_example, list(prompt), list(response), 1)
        if not ok:
            return None
        expected = ours(prompt, response, 1)
        try:
            inputs, labels = (list(map(int, x)) for x in out)
        except (TypeError, ValueError):
            return _verdict(f"expected a pair (inputs, labels) of int lists, got {out!r}")
        if (inputs, labels) != (list(expected[0]), list(expected[1])):
            return _verdict(f"prompt {prompt}, response {response}, eot 1:\n  yours:    inputs {inputs}\n"
                            f"            labels {labels}\n  expected: inputs {expected[0]}\n"
                            f"            labels {expected[1]}")
    return _verdict(None)


def check_sft_loss(sft_loss, seed=0):
    """sft_loss(logits (B, T, V), labels (B, T)) -> the mean of -log p(label) over the positions whose
    label is not -100; compared with sft.supervised_loss_sum / the number of supervised tokens."""
    from sft import supervised_loss_sum
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[torch.rand(3, 7, generator=g) < 0.4] = -100
    labels[0, 0] = 5  # at least one supervised token
    ok, out = _call(sft_loss, logits, labels)
    if not ok:
        return None
    expected = supervised_loss_sum(logits, labels) / (labels != -100).sum()
    return _verdict(_compare("loss", torch.as_tensor(out).reshape(()), expected))


# ----------------------------------------------------------------------------------------------------
# 03_reward_model

def check_bradley_terry_loss(bt_loss, seed=0):
    """bt_loss(r_chosen (B,), r_rejected (B,)) -> per-pair losses (B,), compared with reward.bradley_terry_loss."""
    from reward import bradley_terry_loss
    g = torch.Generator().manual_seed(seed)
    r_c, r_r = torch.randn(16, generator=g) * 5, torch.randn(16, generator=g) * 5
    r_c[0], r_r[0] = 60.0, -60.0  # a confident pair: a naive log(sigmoid(.)) is still fine here...
    r_c[1], r_r[1] = -60.0, 60.0  # ...but not here, where sigmoid underflows to 0 and its log is -inf
    ok, out = _call(bt_loss, r_c, r_r)
    if not ok:
        return None
    losses, _ = bradley_terry_loss(r_c, r_r)
    return _verdict(_compare("losses", out, losses, atol=1e-4))


def check_end_scores(end_scores, seed=0):
    """end_scores(scores (B, T), lengths (B,)) -> (B,) the score at each row's last real token,
    compared with reward.end_scores."""
    from reward import end_scores as ours
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(6, 9, generator=g)
    lengths = torch.randint(1, 10, (6,), generator=g)
    ok, out = _call(end_scores, scores, lengths)
    if not ok:
        return None
    return _verdict(_compare("end scores", out, ours(scores, lengths)))


# ----------------------------------------------------------------------------------------------------
# 04_ppo

def check_compute_gae(compute_gae, seed=0):
    """compute_gae(rewards, values, mask, gamma, lam) -> (advantages, returns), all (B, T), compared with
    ppo.compute_gae: first on batches laid out as ppo.py lays them out (zeros after each row's end),
    then with garbage on the padding, which only the mask can keep out."""
    from ppo import compute_gae as ours
    g = torch.Generator().manual_seed(seed)
    for gamma, lam in [(1.0, 0.95), (0.99, 1.0), (0.9, 0.0), (0.95, 0.9)]:
        for garbage in (False, True):
            mask = _ragged_mask(5, 8, g)
            rewards = torch.randn(5, 8, generator=g) * mask
            values = torch.randn(5, 8, generator=g) * mask
            if garbage:
                rewards = rewards + (1 - mask) * 99.0
                values = values + (1 - mask) * -42.0
            ok, out = _call(compute_gae, rewards.clone(), values.clone(), mask.clone(), gamma, lam)
            if not ok:
                return None
            expected = ours(rewards, values, mask, gamma, lam)
            try:
                advantages, returns = out
            except (TypeError, ValueError):
                return _verdict(f"expected (advantages, returns), got {type(out).__name__}")
            where = f" (gamma={gamma}, lam={lam}{', garbage on the padding: use the mask' if garbage else ''})"
            for name, yours, theirs in [("advantages", advantages, expected[0]), ("returns", returns, expected[1])]:
                mismatch = _compare(name, yours, theirs)
                if mismatch:
                    return _verdict(mismatch + where)
    return _verdict(None)


def check_policy_loss(policy_loss, seed=0):
    """policy_loss(logp, old_logp, advantages, mask, clip_coef) -> the clipped surrogate loss (a scalar),
    compared with the first output of ppo.policy_loss."""
    from ppo import policy_loss as ours
    g = torch.Generator().manual_seed(seed)
    mask = _ragged_mask(4, 6, g)
    old_logp = -torch.rand(4, 6, generator=g) * 3
    logp = old_logp + torch.randn(4, 6, generator=g) * 0.3  # ratios on both sides of the clip range
    advantages = torch.randn(4, 6, generator=g)
    for clip_coef in (0.2, 0.1):
        ok, out = _call(policy_loss, logp, old_logp, advantages, mask, clip_coef)
        if not ok:
            return None
        if isinstance(out, tuple):
            out = out[0]
        mismatch = _compare("loss", torch.as_tensor(out).reshape(()), ours(logp, old_logp, advantages, mask, clip_coef)[0])
        if mismatch:
            return _verdict(mismatch + f" (clip_coef={clip_coef})")
    return _verdict(None)


# ----------------------------------------------------------------------------------------------------
# 05_dpo

def check_dpo_loss(dpo_loss, seed=0):
    """dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    -> per-pair losses (B,), compared with dpo.dpo_loss (loss_type='sigmoid')."""
    from dpo import dpo_loss as ours
    g = torch.Generator().manual_seed(seed)
    logps = [-torch.rand(8, generator=g) * 30 for _ in range(4)]  # sequence log-probs: negative, O(10)
    for beta in (0.1, 0.5):
        ok, out = _call(dpo_loss, *(x.clone() for x in logps), beta)
        if not ok:
            return None
        if isinstance(out, tuple):
            out = out[0]
        mismatch = _compare("losses", out, ours(*logps, beta)[0], atol=1e-4)
        if mismatch:
            return _verdict(mismatch + f" (beta={beta})")
    return _verdict(None)


def check_sequence_logps(sequence_logps, seed=0):
    """sequence_logps(logits (B, T, V), labels (B, T)) -> (B,) sum of log p(label) over the positions whose
    label is not -100, compared with dpo.sequence_logps."""
    from dpo import sequence_logps as ours
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 7, 11, generator=g)
    labels = torch.randint(0, 11, (4, 7), generator=g)
    labels[:, :3] = -100  # a prompt
    labels[1, 5:] = -100  # padding
    ok, out = _call(sequence_logps, logits, labels)
    if not ok:
        return None
    return _verdict(_compare("sequence log-probs", out, ours(logits, labels), atol=1e-4))


# ----------------------------------------------------------------------------------------------------
# 06_grpo

def check_group_advantages(group_advantages, seed=0):
    """group_advantages(rewards, group, estimator) -> (B,) advantages within each group, compared with
    grpo.group_advantages for 'grpo', 'dr_grpo' and 'rloo' on groups of different sizes, one of them all equal."""
    from grpo import group_advantages as ours
    g = torch.Generator().manual_seed(seed)
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3])
    rewards = torch.randn(len(group), generator=g)
    rewards[8:12] = 0.5  # a group that carries no signal: advantage 0
    rewards[4:8] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # one right answer out of four (a verifier)
    for estimator in ("grpo", "dr_grpo", "rloo"):
        ok, out = _call(group_advantages, rewards.clone(), group.clone(), estimator)
        if not ok:
            return None
        mismatch = _compare("advantages", out, ours(rewards, group, estimator), atol=1e-3)
        if mismatch:
            return _verdict(mismatch + f" (estimator={estimator!r})")
    return _verdict(None)


def check_aggregate_loss(aggregate_loss, seed=0):
    """aggregate_loss(token_losses, mask, loss_agg, max_new_tokens) -> a scalar, compared with
    grpo.aggregate_loss for 'grpo', 'dapo' and 'dr_grpo' on a ragged batch."""
    from grpo import aggregate_loss as ours
    g = torch.Generator().manual_seed(seed)
    mask = _ragged_mask(6, 10, g)
    token_losses = torch.randn(6, 10, generator=g)
    for loss_agg in ("grpo", "dapo", "dr_grpo"):
        ok, out = _call(aggregate_loss, token_losses.clone(), mask.clone(), loss_agg, 16)
        if not ok:
            return None
        mismatch = _compare("loss", torch.as_tensor(out).reshape(()), ours(token_losses, mask, loss_agg, 16))
        if mismatch:
            return _verdict(mismatch + f" (loss_agg={loss_agg!r})")
    return _verdict(None)
