"""grpo.py: the three group advantages against a slow per-group loop, the three loss aggregations and the k3 KL
by hand, the toy world's verifier on every math prompt and answer, groups that never straddle two DDP ranks,
ratio = 1 on the first on-policy step, and smoke runs (the toy config, the verifier, DDP, a bitwise resume)."""

import json
import math
import os
import statistics
import subprocess
import sys

import pytest
import torch

from data.toy import world
from data.toy.verifier import math_operands, math_reward
from grpo import (aggregate_loss, equal_reward_groups, group_advantages, grpo_update, k3_kl, rank_groups,
                  response_rewards)

from conftest import ROOT, run_stage, tiny_sft_checkpoint, write_records


# ------------------------------------------------------------------------------------------------
# advantages against a slow per-group loop written here

def advantages_slow(rewards, groups, estimator, eps=1e-4):
    """Per group, from the papers' definitions, with Python floats."""
    out = [0.0] * len(rewards)
    for g in sorted(set(groups)):
        members = [i for i, x in enumerate(groups) if x == g]
        r = [rewards[i] for i in members]
        if max(r) == min(r):
            continue  # no signal: 0
        mean = sum(r) / len(r)
        for i in members:
            if estimator == "grpo":
                out[i] = (rewards[i] - mean) / (statistics.stdev(r) + eps)
            elif estimator == "dr_grpo":
                out[i] = rewards[i] - mean
            else:  # rloo: the mean of the others, the sample itself left out
                others = [rewards[j] for j in members if j != i]
                out[i] = rewards[i] - sum(others) / len(others)
    return out


@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo", "rloo"])
@pytest.mark.parametrize("sizes", [[2, 2, 2], [8, 8], [2, 5, 8, 3]], ids=["G2", "G8", "ragged"])
def test_group_advantages_match_a_per_group_loop(estimator, sizes):
    g = torch.Generator().manual_seed(sum(sizes))
    groups = [k for k, n in enumerate(sizes) for _ in range(n)]
    perm = torch.randperm(len(groups), generator=g).tolist()  # groups need not be contiguous
    groups = [groups[i] for i in perm]
    rewards = torch.randn(len(groups), generator=g, dtype=torch.float64)
    got = group_advantages(rewards, torch.tensor(groups), estimator)
    assert got.tolist() == pytest.approx(advantages_slow(rewards.tolist(), groups, estimator), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo", "rloo"])
def test_a_group_of_equal_rewards_gets_zero_advantages_and_no_nan(estimator):
    # 0.1 * 3 / 3 != 0.1 in floating point: the zeros must be exact anyway
    rewards = torch.tensor([0.1, 0.1, 0.1, 1.0, 0.0, 7.0, 7.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    adv = group_advantages(rewards, groups, estimator)
    assert not adv.isnan().any()
    assert adv[[0, 1, 2, 5, 6]].tolist() == [0.0] * 5 and adv[3] > 0 > adv[4]
    assert equal_reward_groups(rewards, groups).tolist() == [True, False, True]


def test_rloo_baseline_leaves_the_sample_out():
    # G = 3, rewards 1, 2, 6: baselines (2 + 6)/2 = 4, (1 + 6)/2 = 3.5, (1 + 2)/2 = 1.5
    adv = group_advantages(torch.tensor([1.0, 2.0, 6.0]), torch.zeros(3, dtype=torch.long), "rloo")
    assert adv.tolist() == pytest.approx([1 - 4, 2 - 3.5, 6 - 1.5])
    # the baseline of sample 0 does not move when sample 0's own reward does
    moved = group_advantages(torch.tensor([11.0, 2.0, 6.0]), torch.zeros(3, dtype=torch.long), "rloo")
    assert (11.0 - moved[0]).item() == pytest.approx(1.0 - adv[0].item())
    # RLOO = G / (G - 1) x Dr. GRPO's mean-centred advantage
    dr = group_advantages(torch.tensor([1.0, 2.0, 6.0]), torch.zeros(3, dtype=torch.long), "dr_grpo")
    assert adv.tolist() == pytest.approx((dr * 3 / 2).tolist())


def test_grpo_advantages_by_hand_and_a_group_of_one_is_an_error():
    # rewards 0, 1 (G = 2): mean 0.5, sample std sqrt(0.5) -> A = -+0.5 / (0.70711 + eps)
    adv = group_advantages(torch.tensor([0.0, 1.0]), torch.tensor([0, 0]), "grpo", eps=0.0)
    assert adv.tolist() == pytest.approx([-0.5 / math.sqrt(0.5), 0.5 / math.sqrt(0.5)])
    with pytest.raises(ValueError, match=">= 2 responses"):
        group_advantages(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0, 0, 1]), "grpo")


# ------------------------------------------------------------------------------------------------
# loss aggregation and the KL term, by hand

def test_the_three_aggregations_by_hand():
    # two responses: lengths 1 and 3 (the rest is padding, whose values must not count)
    losses = torch.tensor([[4.0, 99.0, 99.0, 99.0], [1.0, 2.0, 3.0, 99.0]])
    mask = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 0]])
    # GRPO: mean per response (4 and 2), then over responses: 3
    assert aggregate_loss(losses, mask, "grpo", max_new_tokens=4).item() == pytest.approx(3.0)
    # DAPO: every token once: (4 + 1 + 2 + 3) / 4 = 2.5
    assert aggregate_loss(losses, mask, "dapo", max_new_tokens=4).item() == pytest.approx(2.5)
    # Dr. GRPO: token sums 4 and 6, divided by max_new_tokens, mean over responses: (4/4 + 6/4) / 2 = 1.25
    assert aggregate_loss(losses, mask, "dr_grpo", max_new_tokens=4).item() == pytest.approx(1.25)
    # a response masked out whole (drop_equal_groups) does not count in any of them
    dropped = torch.cat([mask, torch.zeros(1, 4)])
    padded = torch.cat([losses, torch.full((1, 4), 50.0)])
    for agg, expected in (("grpo", 3.0), ("dapo", 2.5), ("dr_grpo", 1.25)):
        assert aggregate_loss(padded, dropped, agg, max_new_tokens=4).item() == pytest.approx(expected), agg


def test_k3_is_nonnegative_and_zero_at_the_reference():
    g = torch.Generator().manual_seed(0)
    logp, ref_logp = -5 * torch.rand(64, 16, generator=g), -5 * torch.rand(64, 16, generator=g)
    assert (k3_kl(logp, ref_logp) >= 0).all()
    assert k3_kl(logp, logp).abs().max().item() == 0.0
    # by hand: pi = 0.5, pi_ref = 0.25 -> 0.5 - log 0.5 - 1
    assert k3_kl(torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25))).item() == pytest.approx(0.5 - math.log(0.5) - 1)


def test_k3_is_an_unbiased_estimate_of_the_kl_under_samples_of_the_policy():
    pi, ref = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.3, 0.3, 0.4])
    exact = (pi * (pi / ref).log()).sum()
    expected_k3 = (pi * k3_kl(pi.log(), ref.log())).sum()  # E_{y ~ pi}[k3(y)]
    assert expected_k3.item() == pytest.approx(exact.item(), rel=1e-6)


def test_response_rewards_modes():
    rm = torch.tensor([0.5, -1.0, 2.0])
    verdicts = [1.0, None, 0.0]
    assert response_rewards("model", rm, verdicts, "cpu").tolist() == [0.5, -1.0, 2.0]
    assert response_rewards("model+verifier", rm, verdicts, "cpu").tolist() == [1.0, -1.0, 0.0]
    assert response_rewards("verifier", None, [1.0, 0.0], "cpu").tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="does not apply"):
        response_rewards("verifier", None, verdicts, "cpu")
    # unverified='zero': what the rule cannot check scores 0 (its group's rewards are equal: only the KL term acts)
    assert response_rewards("verifier", None, verdicts, "cpu", unverified="zero").tolist() == [1.0, 0.0, 0.0]


# ------------------------------------------------------------------------------------------------
# the toy world's verifier: every math prompt, every answer

def test_verifier_on_every_math_prompt_and_answer_the_world_can_produce():
    n_math = 0
    for prompt, (kind, slot, _) in world.PROMPTS.items():
        if kind != "math":
            assert math_reward(prompt, world.math_answer(3)) is None, prompt  # no other prompt has a digit
            continue
        n_math += 1
        assert math_operands(prompt) == slot, prompt
        for n in range(10):
            assert math_reward(prompt, world.math_answer(n)) == float(n == sum(slot)), (prompt, n)
    assert n_math == len(world.MATH_TEMPLATES) * 9 * len(world.OPENERS) * len(world.CLOSERS)


@pytest.mark.parametrize("response,ended", [
    ("It is 5", True), ("It is 5. It is 5.", True), ("5", True), ("The answer is 5.", True), ("It is 05.", True),
    ("It is 5.", False), ("", True), ("I don't know.", True), ("It is 4.", True), ("It is five.", True)])
def test_verifier_rejects_malformed_wrong_and_unfinished_answers(response, ended):
    assert math_reward("What is 3+2?", response, ended) == 0.0
    assert math_reward("What is 3+2?", " It is 5. ", True) == 1.0  # surrounding whitespace is not a mistake


# ------------------------------------------------------------------------------------------------
# groups and DDP ranks

def test_rank_groups_lays_groups_out_whole_and_contiguous():
    ids, group = rank_groups(100, prompts_per_iter=3, group_size=4, seed=1, it=5, rank=1, world_size=2)
    assert len(ids) == 12 and group.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert all(ids[i] == ids[i - i % 4] for i in range(12))


DDP_SCRIPT = """
import json, sys, torch.distributed as dist
sys.path.insert(0, {root!r})
from grpo import rank_groups
from runtime import setup_runtime, teardown
rt = setup_runtime("cpu", "float32", seed=0)
ids, group = rank_groups(7, 3, 4, 1337, 2, rt.rank, rt.world_size)
gathered = [None] * rt.world_size
dist.all_gather_object(gathered, (ids, group.tolist()))
if rt.master:
    json.dump(gathered, open({out!r}, "w"))
teardown(rt)
"""


def test_a_group_never_straddles_two_ranks_under_two_gloo_processes(tmp_path):
    script = tmp_path / "groups.py"
    script.write_text(DDP_SCRIPT.format(root=ROOT, out=str(tmp_path / "groups.json")))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script)], capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    (ids0, group0), (ids1, group1) = json.loads((tmp_path / "groups.json").read_text())
    for ids, group in ((ids0, group0), (ids1, group1)):
        assert len(ids) == 12
        for g in set(group):  # each group: G responses of one prompt, on this rank
            assert len({ids[i] for i in range(12) if group[i] == g}) == 1 and group.count(g) == 4
    # the two ranks' prompts are the global draw, split in two halves, one per rank
    global_draw = rank_groups(7, 6, 4, 1337, 2, rank=0, world_size=1)[0]
    assert ids0 + ids1 == global_draw


# ------------------------------------------------------------------------------------------------
# the update on a tiny model

VOCAB = 12


def tiny_batch(group_rewards):
    """A tiny policy, its reference, and a rollout of 2 groups of 2 from ppo.rollout."""
    from model import GPT, GPTConfig
    from ppo import rollout
    from runtime import setup_runtime
    from tokenizer import CharTokenizer
    torch.manual_seed(0)
    policy = GPT(GPTConfig(block_size=32, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=16))
    ref = GPT(GPTConfig(block_size=32, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=16))
    ref.load_state_dict(policy.state_dict())
    rt = setup_runtime("cpu", "float32", seed=3)
    tok = CharTokenizer("abcdefghij")  # VOCAB ids: pad 0, end-of-text 1
    batch = rollout(policy.eval(), ref.eval(), None, None, [[3, 4, 5], [3, 4, 5], [6, 7], [6, 7]], tok, 6, 1.0, 1.0, rt)
    group = torch.tensor([0, 0, 1, 1])
    return policy, batch, group_advantages(torch.tensor(group_rewards), group, "grpo"), rt


class Cfg:
    grpo_epochs, minibatch_size, temperature, clip_low, clip_high, kl_coef, kl_in = 1, 4, 1.0, 0.2, 0.28, 0.1, "loss"
    loss_agg, max_new_tokens, grad_clip = "grpo", 6, 0.0


def test_first_on_policy_step_has_ratio_one_and_zero_kl_to_the_reference():
    from optim import configure_adamw
    policy, batch, advantages, rt = tiny_batch([1.0, 0.0, 0.0, 2.0])
    optimizer = configure_adamw(policy.train(), 1e-3, 0.0, (0.9, 0.95), "cpu")
    metrics = grpo_update(policy, optimizer, batch, advantages, Cfg, torch.Generator().manual_seed(0), rt)
    assert abs(metrics["grpo/approx_kl"].item()) < 1e-6 and metrics["grpo/clipfrac"].item() == 0.0
    assert abs(metrics["grpo/kl_k3"].item()) < 1e-6  # policy = reference before the step
    assert metrics["grpo/grad_norm"].item() > 0


def test_groups_masked_out_leave_the_policy_unchanged():
    # every group equal: advantages 0; with their mask zeroed (drop_equal_groups) nothing at all is learned
    from optim import configure_adamw
    policy, batch, advantages, rt = tiny_batch([1.0, 1.0, 0.5, 0.5])
    assert advantages.tolist() == [0.0] * 4
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    optimizer = configure_adamw(policy.train(), 1e-3, 0.0, (0.9, 0.95), "cpu")
    grpo_update(policy, optimizer, dict(batch, mask=torch.zeros_like(batch["mask"])), advantages, Cfg,
                torch.Generator().manual_seed(0), rt)
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k]), k


# ------------------------------------------------------------------------------------------------
# smoke runs

def test_importing_grpo_runs_nothing(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import grpo"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    assert not os.path.exists(os.path.join(ROOT, "out", "grpo"))


@pytest.fixture(scope="module")
def toy_dirs(tmp_path_factory):
    """The toy world's files, a 1-layer SFT stand-in whose vocabulary covers them, and a stand-in reward model."""
    d = tmp_path_factory.mktemp("tiny_grpo")
    subprocess.run([sys.executable, "-m", "data.toy.prepare", "--out_dir", str(d / "data")], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    tiny_sft_checkpoint(d, [*world.PROMPTS, *world.SENTENCES], block_size=128, scalar_head_dir="rm")
    return d


def grpo_args(d, out, **overrides):
    """config/grpo_toy.py at a few steps' size, on the tiny stand-in models."""
    args = {"config": os.path.join(ROOT, "config", "grpo_toy.py"), "sft_dir": d / "sft", "reward_dir": d / "rm",
            "prompts": d / "data" / "rl_prompts.jsonl", "eval_prompts": d / "data" / "eval_prompts.jsonl",
            "out_dir": out, "prompts_per_iter": 2, "group_size": 2, "minibatch_size": 2, "max_iters": 2,
            "max_new_tokens": 8, "eval_interval": 2, "sample_interval": 1, "learning_rate": 1e-3, "dtype": "float32"}
    return [f"--config={args.pop('config')}"] + [f"--{k}={v}" for k, v in {**args, **overrides}.items()]


def test_smoke_run_of_the_toy_config(toy_dirs, tmp_path):
    result = run_stage("grpo.py", grpo_args(toy_dirs, tmp_path / "grpo"))
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in open(tmp_path / "grpo" / "metrics.jsonl")]
    for key in ("env/reward", "env/reward_mean", "env/gold_score", "objective/kl", "grpo/equal_reward_groups",
                "grpo/clipfrac", "grpo/kl_k3", "response/length"):
        assert key in records[1], key
    assert "eval/gold_score" in records[0] and "eval/rm_score" in records[0]
    assert (tmp_path / "grpo" / "ckpt.pt").exists() and (tmp_path / "grpo" / "samples.txt").exists()
    assert torch.load(tmp_path / "grpo" / "ckpt.pt", weights_only=True)["stage"] == "grpo"


def test_smoke_run_with_the_verifier_on_math_prompts_loads_no_reward_model(toy_dirs, tmp_path):
    args = grpo_args(toy_dirs, tmp_path / "math", reward="verifier", prompt_kinds="math",
                     reward_dir=tmp_path / "no_such_dir", drop_equal_groups=True)
    result = run_stage("grpo.py", args)
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in open(tmp_path / "math" / "metrics.jsonl")]
    assert "env/verifier_correct" in records[1] and "env/reward_mean" not in records[1]
    assert "eval/rm_score" not in records[0]


def test_smoke_run_of_the_verifier_config_loads_no_reward_model(toy_dirs, tmp_path):
    """config/grpo_verifier_toy.py at a few steps' size: every kind sampled, the rule scoring the sums."""
    args = grpo_args(toy_dirs, tmp_path / "verifier", reward_dir=tmp_path / "no_such_dir")
    args[0] = f"--config={os.path.join(ROOT, 'config', 'grpo_verifier_toy.py')}"
    result = run_stage("grpo.py", args)
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in open(tmp_path / "verifier" / "metrics.jsonl")]
    assert "env/verifier_correct" in records[1] and "eval/rm_score" not in records[0]


def test_verifier_on_prompts_it_does_not_apply_to_is_one_clear_line(toy_dirs, tmp_path):
    result = run_stage("grpo.py", grpo_args(toy_dirs, tmp_path / "bad", reward="verifier"))
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "rl_prompts.jsonl:" in result.stderr
    assert "does not apply" in result.stderr and not (tmp_path / "bad").exists()


def test_verifier_with_unverified_zero_trains_on_every_kind(toy_dirs, tmp_path):
    """--unverified=zero: every kind is sampled, the rule scores the sums only (env/verifier_correct is over those)."""
    result = run_stage("grpo.py", grpo_args(toy_dirs, tmp_path / "anchor", reward="verifier", unverified="zero",
                                            reward_dir=tmp_path / "no_such_dir", prompts_per_iter=8))
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in open(tmp_path / "anchor" / "metrics.jsonl")]
    assert "env/verifier_correct" in records[1] and "env/reward_mean" not in records[1]


@pytest.mark.parametrize("overrides,expected", [
    (dict(unverified="zero"), "unverified = 'zero': what the rule cannot check is scored by the reward model"),
    (dict(reward="verifier", unverified="zero", kl_in="loss", drop_equal_groups=True),
     "every group the rule cannot check has equal rewards (0) and would be dropped"),
    (dict(reward="verifier", unverified="zero", prompt_kinds="topic"), "applies to none of these prompts"),
    (dict(reward="verifier", unverified="zero", kl_coef=0), "nothing would act on the prompts the rule cannot check"),
])
def test_unverified_settings_that_mean_nothing_are_one_clear_line(toy_dirs, tmp_path, overrides, expected):
    result = run_stage("grpo.py", grpo_args(toy_dirs, tmp_path / "bad", **overrides))
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0, result.stderr
    assert expected in result.stderr and not (tmp_path / "bad").exists()


def test_ddp_smoke_run_with_two_gloo_processes(toy_dirs, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = run_stage("grpo.py", grpo_args(toy_dirs, tmp_path / "ddp", drop_equal_groups=True), launcher=torchrun)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "ddp" / "ckpt.pt").exists()


def metric_lines(out_dir):
    """metrics.jsonl without its wall-clock fields, which differ between any two runs."""
    return [{k: v for k, v in r.items() if k != "time" and not k.startswith("perf/")}
            for r in map(json.loads, open(out_dir / "metrics.jsonl"))]


def test_resume_is_bitwise_exact(toy_dirs, tmp_path):
    """4 iterations in one go == 2, then --resume=True for 2 more: the same weights, optimizer state and
    logged metrics (sampling draws from the global RNG, restored from the checkpoint)."""
    full = grpo_args(toy_dirs, tmp_path / "full", max_iters=4, grpo_epochs=2)
    assert run_stage("grpo.py", full).returncode == 0
    half = grpo_args(toy_dirs, tmp_path / "half", max_iters=2, grpo_epochs=2)
    assert run_stage("grpo.py", half).returncode == 0
    result = run_stage("grpo.py", half + ["--max_iters=4", "--resume=True"])
    assert result.returncode == 0, result.stderr
    a, b = (torch.load(tmp_path / name / "ckpt.pt", weights_only=True) for name in ("full", "half"))
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])
    assert metric_lines(tmp_path / "full") == metric_lines(tmp_path / "half")


def test_training_curves_are_read_from_each_runs_training_rows(tmp_path):
    # evaluate.py --curves (scripts/grpo_experiments.sh: response length per loss aggregation)
    from evaluate import read_training_curves
    write_records(tmp_path / "metrics.jsonl", [{"step": 0, "response/length": 9.0}, {"step": 0, "eval/gold_score": 0.1},
                                               {"step": 1, "response/length": 12.5}])
    assert read_training_curves("a", str(tmp_path), ["response/length"]) == {"response/length": ([0, 1], [9.0, 12.5])}
    with pytest.raises(KeyError, match="--curves objective/kl: not a metric of --runs a:"):
        read_training_curves("a", str(tmp_path), ["objective/kl"])
