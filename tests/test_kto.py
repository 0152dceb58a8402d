"""kto.py: the loss against the KTO paper's formula written here in plain math (margins large, small and
negative, both labels), the reference point from mismatched pairs (which completion goes with which prompt)
and its carrying no gradient, the class-balance weights, both data formats and their bad records, a smoke
run and an exact resume."""

import json
import math

import pytest
import torch

from kto import class_weights, kto_loss, load_examples, mismatched_examples, reference_point
from sft import build_example

from conftest import run_stage, tiny_sft_checkpoint, write_records


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


def kto_by_hand(policy_logp, ref_logp, desirable, z_ref, beta, lambda_d, lambda_u):
    """Ethayarajh et al. 2024, eq. 8: lambda_y - v(x, y), v = lambda_D sigma(beta (r - z0)) for desirable,
    lambda_U sigma(beta (z0 - r)) for undesirable; r = log pi / pi_ref."""
    r = policy_logp - ref_logp
    sigma = lambda v: 1 / (1 + math.exp(-v))
    return lambda_d * (1 - sigma(beta * (r - z_ref))) if desirable else lambda_u * (1 - sigma(beta * (z_ref - r)))


# (log pi, log pi_ref, desirable, z_ref): a desirable completion far above the reference point, one below it,
# an undesirable one far below, one above; beta 0.5 so that beta * margin spans -5 .. 5
CASES = [(-2.0, -12.0, True, 0.5), (-9.0, -7.0, True, 1.0), (-20.0, -10.0, False, 0.0), (-4.0, -6.0, False, 3.0)]


@pytest.mark.parametrize("policy_logp,ref_logp,desirable,z_ref", CASES)
def test_loss_against_the_paper(policy_logp, ref_logp, desirable, z_ref):
    losses, rewards = kto_loss(t(policy_logp), t(ref_logp), torch.tensor([desirable]), torch.tensor(z_ref), beta=0.5,
                               desirable_weight=1.5, undesirable_weight=0.7)
    assert losses.item() == pytest.approx(kto_by_hand(policy_logp, ref_logp, desirable, z_ref, 0.5, 1.5, 0.7), rel=1e-5)
    assert rewards.item() == pytest.approx(0.5 * (policy_logp - ref_logp))


def test_policy_equal_to_reference_with_zero_reference_point_gives_half_of_each_weight():
    logps = t(-3.0, -8.0)
    losses, rewards = kto_loss(logps, logps, torch.tensor([True, False]), torch.tensor(0.0), 0.1, 2.0, 1.0)
    assert losses.tolist() == pytest.approx([1.0, 0.5]) and rewards.tolist() == [0.0, 0.0]


def test_mismatched_pairs_put_each_prompt_with_another_prompts_completion():
    # prompts a a b c: the two halves of a split pair share prompt a, so a's partner is the next other prompt's
    a, b, c = [10, 11], [12], [13, 14]
    batch = [(a, [1]), (a, [2]), (b, [3]), (c, [4])]
    got = mismatched_examples(batch, eot_id=0, block_size=16)
    assert got == [build_example(a, [3], 0), build_example(a, [3], 0), build_example(b, [4], 0), build_example(c, [1], 0)]
    # one prompt only: no mismatched pair exists, the next completion is taken
    assert mismatched_examples([(a, [1]), (a, [2])], 0, 16) == [build_example(a, [2], 0), build_example(a, [1], 0)]
    # a completion that would not fit with this prompt is cut: 2 + 3 + <end> = 6 tokens = block_size 5 + 1
    assert mismatched_examples([(a, [1]), (b, [5, 6, 7, 8])], 0, 5)[0] == build_example(a, [5, 6, 7], 0)


def test_reference_point_is_the_clamped_mean_and_carries_no_gradient():
    policy = torch.tensor([-3.0, -5.0], requires_grad=True)
    z = reference_point(policy, t(-4.0, -5.0), across_ranks=False)
    assert z.item() == pytest.approx(0.5) and not z.requires_grad  # mean(1, 0)
    assert reference_point(t(-6.0, -5.0), t(-4.0, -5.0), across_ranks=False).item() == 0.0  # mean -1, clamped at 0
    losses, _ = kto_loss(policy, t(-4.0, -5.0), torch.tensor([True, False]), z, 0.1, 1.0, 1.0)
    losses.sum().backward()
    # d/dlogp of lambda (1 - sigma(beta (r - z))) = -lambda beta sigma'(.) only: z contributes nothing
    s = lambda v: 1 / (1 + math.exp(-v))
    expected = [-0.1 * s(0.1 * (1 - 0.5)) * (1 - s(0.1 * (1 - 0.5))), 0.1 * s(0.1 * 0.5) * (1 - s(0.1 * 0.5))]
    assert policy.grad.tolist() == pytest.approx(expected, rel=1e-5)


def test_class_weights_balance_the_classes():
    assert class_weights(100, 1000, 0.0, 1.0) == (10.0, 1.0)  # lambda_D n_D = lambda_U n_U
    assert class_weights(500, 500, 0.0, 1.0) == (1.0, 1.0)
    assert class_weights(300, 0, 0.0, 1.0) == (1.0, 1.0)  # one class alone: nothing to balance
    assert class_weights(100, 1000, 12.0, 1.0) == (12.0, 1.0)  # set by hand: kept


@pytest.fixture(scope="module")
def tiny_sft(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_kto")
    prefs = [{"prompt": f"say {w}", "chosen": w, "rejected": "no"} for w in ["apple", "pear", "plum", "fig"] * 3]
    write_records(d / "prefs.jsonl", prefs)
    unpaired = [{"prompt": r["prompt"], "completion": r[key], "label": key == "chosen"}
                for r in prefs for key in ("chosen", "rejected")]
    write_records(d / "unpaired.jsonl", unpaired[:-3])  # 11 desirable, 10 undesirable
    tiny_sft_checkpoint(d, [r["prompt"] + r["chosen"] + r["rejected"] for r in prefs])
    return d


def test_both_formats_give_the_same_examples(tiny_sft):
    from tokenizer import get_tokenizer
    tok = get_tokenizer(str(tiny_sft / "vocab.json"))
    from_pairs, labels_pairs, paired, _ = load_examples(str(tiny_sft / "prefs.jsonl"), tok, 48, False)
    from_unpaired, labels_unpaired, unpaired, _ = load_examples(str(tiny_sft / "unpaired.jsonl"), tok, 48, False)
    assert from_pairs[:21] == from_unpaired and labels_pairs[:21] == labels_unpaired and paired and not unpaired
    assert labels_pairs[:4] == [True, False, True, False]  # chosen, then rejected, of each pair in turn
    assert from_pairs[0][0] == from_pairs[1][0] and from_pairs[0][1] == tok.encode(" apple")


def run_kto(d, out, **overrides):
    args = dict(init_from=d / "sft", train_data=d / "unpaired.jsonl", val_data=d / "prefs.jsonl", out_dir=out,
                batch_size=4, grad_accum_steps=1, max_iters=4, learning_rate=1e-3, min_lr=1e-3, warmup_iters=0,
                eval_interval=2, log_interval=1, device="cpu", dtype="float32")
    return run_stage("kto.py", {**args, **overrides})


def test_smoke_run_logs_the_reference_point_and_the_balance(tiny_sft, tmp_path):
    result = run_kto(tiny_sft, tmp_path / "kto")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 desirable, 10 undesirable" in result.stdout and "lambda_D 0.909, lambda_U 1 " in result.stdout  # 10 / 11
    rows = [json.loads(line) for line in open(tmp_path / "kto" / "metrics.jsonl")]
    first = rows[0]
    assert first["rewards/chosen"] == 0.0 and first["rewards/rejected"] == 0.0 and first["kl"] == 0.0  # at the reference
    assert 10 / 11 / 2 - 1e-6 <= first["loss"] <= 0.5 + 1e-6  # each example's term lambda / 2: (10 / 11) / 2 or 1 / 2
    evals = [r for r in rows if "val/loss" in r]
    assert evals and all(math.isfinite(r["val/loss"]) and 0 <= r["val/rewards/accuracies"] <= 1 for r in evals)  # val: pairs
    assert torch.load(tmp_path / "kto" / "ckpt.pt", weights_only=True)["stage"] == "kto"


def test_resume_is_bitwise_exact(tiny_sft, tmp_path):
    assert run_kto(tiny_sft, tmp_path / "full").returncode == 0
    assert run_kto(tiny_sft, tmp_path / "half", max_iters=2).returncode == 0
    result = run_kto(tiny_sft, tmp_path / "half", resume=True)
    assert result.returncode == 0, result.stderr
    full, resumed = (torch.load(tmp_path / name / "ckpt.pt", weights_only=True) for name in ("full", "half"))
    assert full["step"] == resumed["step"] == 4
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), k


@pytest.mark.parametrize("record,expected", [
    ({"prompt": "say fig", "completion": "fig"}, r"unpaired.jsonl:2: missing key 'label' \(expected true or false\)$"),
    ({"prompt": "say fig", "completion": "fig", "label": "yes"}, r"unpaired.jsonl:2: key 'label' is 'yes', expected true or false$"),
    ({"prompt": "say fig", "completion": "fig", "label": 1}, r"unpaired.jsonl:2: key 'label' is 1, expected true or false$"),
    ({"prompt": "say fig", "label": True}, r"unpaired.jsonl:2: missing key 'completion' \(expected a non-empty string\)$"),
    ({"prompt": "say fig", "completion": "", "label": False}, r"unpaired.jsonl:2: key 'completion' is empty"),
    ({"prompt": "say fig " * 8, "completion": "fig", "label": True}, r"unpaired.jsonl:2: example of \d+ tokens is longer than block_size 48"),
])
def test_bad_unpaired_records_are_one_line_naming_file_and_line(tiny_sft, tmp_path, record, expected):
    import re
    bad = tmp_path / "unpaired.jsonl"
    bad.write_text(json.dumps({"prompt": "say fig", "completion": "fig", "label": True}) + "\n" + json.dumps(record) + "\n")
    result = run_kto(tiny_sft, tmp_path / "out", train_data=bad)
    assert result.returncode == 2 and re.search(expected, result.stderr.strip()), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_ddp_smoke_run_two_gloo_processes(tiny_sft, tmp_path):
    """Under torchrun each rank pairs its own micro-batch; z_ref is all-reduced in training and per rank in
    the held-out evaluation, whose batch counts differ between ranks (11 split pairs -> 6 and 5), and the
    held-out pair accuracy is gathered from both."""
    import sys
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args = dict(init_from=tiny_sft / "sft", train_data=tiny_sft / "unpaired.jsonl", val_data=tiny_sft / "prefs.jsonl",
                eval_max_examples=22, out_dir=tmp_path / "ddp", batch_size=2, grad_accum_steps=2, max_iters=2, eval_interval=2,
                learning_rate=1e-3, min_lr=1e-3, warmup_iters=0, log_interval=1, device="cpu", dtype="float32")
    result = run_stage("kto.py", args, launcher=torchrun)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "8 examples per step = 2 x 2 x 2 processes" in result.stdout
    rows = [json.loads(line) for line in open(tmp_path / "ddp" / "metrics.jsonl")]
    assert math.isfinite(rows[-1]["val/loss"]) and 0 <= rows[-1]["val/rewards/accuracies"] <= 1
    assert (tmp_path / "ddp" / "ckpt.pt").exists()
