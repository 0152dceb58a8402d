"""reward.py: where the score is read, the Bradley-Terry loss, the normalisation, the rank correlation,
bad data, and a smoke run."""

import json
import math

import pytest
import torch

from model import GPT, GPTConfig
from reward import bradley_terry_loss, collate_pairs, end_scores, normalize_head, rankdata, spearman

from conftest import run_stage, tiny_sft_checkpoint, write_records


@pytest.fixture(scope="module")
def rm():
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=32, vocab_size=20, n_layer=2, n_head=2, n_embd=16, scalar_head=True)).eval()


def test_score_is_read_at_end_of_text_and_padding_cannot_change_it(rm):
    eot, pad = 1, 0
    chosen, rejected = [5, 6, 7, 8, eot], [5, 6, 9, eot]
    x, lengths = collate_pairs([(chosen, rejected)], pad, "cpu")
    assert x.tolist() == [chosen, rejected + [pad]] and lengths.tolist() == [5, 4]
    with torch.no_grad():
        r = end_scores(rm.score(x), lengths)
        alone = [rm.score(torch.tensor([s]))[0, -1] for s in (chosen, rejected)]  # each unpadded: its last token
        assert torch.allclose(r, torch.stack(alone), atol=1e-6)
        x2 = x.clone()
        x2[1, 4] = 13  # anything after end-of-text
        assert torch.allclose(end_scores(rm.score(x2), lengths), r, atol=1e-6)


def test_loss_sign_ties_and_margin():
    up, down = torch.tensor([2.0]), torch.tensor([-1.0])
    loss_right, correct_right = bradley_terry_loss(up, down)
    loss_wrong, correct_wrong = bradley_terry_loss(down, up)
    assert loss_right.item() < loss_wrong.item() and correct_right.item() == 1 and correct_wrong.item() == 0
    assert math.isclose(loss_right.item(), math.log(1 + math.exp(-3.0)), rel_tol=1e-6)  # -log sigma(3)
    equal = torch.tensor([0.7, -0.2])
    loss, correct = bradley_terry_loss(equal, equal)
    assert torch.allclose(loss, torch.full((2,), math.log(2))) and correct.sum().item() == 0  # ties are wrong
    loss_m, _ = bradley_terry_loss(up, down, margin=1.0)
    assert math.isclose(loss_m.item(), math.log(1 + math.exp(-2.0)), rel_tol=1e-6)


def test_normalisation_gives_mean_zero_std_one(rm):
    model = GPT(GPTConfig(block_size=32, vocab_size=20, n_layer=1, n_head=2, n_embd=16, scalar_head=True)).eval()
    x = torch.randint(2, 20, (64, 10))
    with torch.no_grad():
        raw = model.score(x)[:, -1].numpy()
        stats = normalize_head(model, raw)
        normed = model.score(x)[:, -1].numpy()
    assert abs(normed.mean()) < 1e-5 and abs(normed.std() - 1) < 1e-5
    assert math.isclose(stats["raw_mean"], raw.mean(), rel_tol=1e-5)


def test_rankdata_and_spearman_by_hand():
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x: 1 2 3 4 5, y: 2 1 4 3 5 -> d^2 = 1+1+1+1+0 = 4; rho = 1 - 6*4 / (5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------------
# runs of reward.py

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_rm")
    words = ["apple", "pear", "plum", "fig", "kiwi", "lime"]
    prefs = [{"prompt": f"say {w}", "chosen": w, "rejected": "no"} for w in words * 3]
    prefs.append({"prompt": "say fig", "chosen": "fig", "rejected": "fig"})  # identical: skipped, counted
    write_records(d / "prefs.jsonl", prefs)
    write_records(d / "val.jsonl", prefs)
    write_records(d / "prompts.jsonl", [{"prompt": f"say {w}"} for w in words])
    tiny_sft_checkpoint(d, [r["prompt"] + r["chosen"] + r["rejected"] for r in prefs])
    return d


def run_reward(d, out, **overrides):
    args = dict(init_from=d / "sft", train_data=d / "prefs.jsonl", val_data=d / "val.jsonl", rl_prompts=d / "prompts.jsonl",
                out_dir=out, batch_size=4, grad_accum_steps=1, max_iters=4, learning_rate=1e-2, warmup_iters=0,
                eval_interval=2, log_interval=1, norm_samples=6, max_new_tokens=8, device="cpu", dtype="float32")
    return run_stage("reward.py", {**args, **overrides})


def test_smoke_run_reports_skips_and_normalises(tiny_run, tmp_path):
    result = run_reward(tiny_run, tmp_path / "rm")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped: 1 identical" in result.stdout
    from checkpoint import load_checkpoint
    ckpt = load_checkpoint(str(tmp_path / "rm"))
    assert ckpt["model_args"]["scalar_head"] and ckpt["reward_norm"]["n_samples"] == 6
    assert (tmp_path / "rm" / "report.json").exists()


@pytest.mark.parametrize("record,expected", [
    ({"prompt": "say fig", "chosen": "fig"}, r"prefs.jsonl:2: missing key 'rejected'"),
    ({"prompt": "say fig " * 10, "chosen": "fig", "rejected": "no"}, r"prefs.jsonl:2: pair of \d+ tokens is longer than block_size 48"),
])
def test_bad_pairs_are_one_clear_line(tiny_run, tmp_path, record, expected):
    bad = tmp_path / "prefs.jsonl"
    bad.write_text(json.dumps({"prompt": "say fig", "chosen": "fig", "rejected": "no"}) + "\n" + json.dumps(record) + "\n")
    result = run_reward(tiny_run, tmp_path / "out", train_data=bad)
    assert result.returncode == 2
    import re
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(expected, lines[0]), result.stderr
    assert not (tmp_path / "out").exists()
