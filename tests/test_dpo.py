"""dpo.py: each loss variant against values worked by hand (SimPO and ORPO against their papers' formulas
written here in plain math), the policy == reference case, masking, lengths counting end-of-text, the
loss falling on a fixed batch, bad data, bad settings, smoke runs, and the reference-free losses loading
no reference model."""

import json
import math

import pytest
import torch

from data.batches import collate
import dpo
from dpo import dpo_loss, log1mexp, orpo_loss, response_lengths, sequence_logps, simpo_loss
from model import GPT, GPTConfig
from sft import build_example

from conftest import run_stage, tiny_sft_checkpoint, write_records


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


def test_policy_equal_to_reference_gives_ln2_zero_rewards_zero_accuracy():
    logps = t(-3.0, -7.5)
    losses, rc, rr = dpo_loss(logps, logps + 1, logps, logps + 1, beta=0.1)
    assert torch.allclose(losses, torch.full((2,), math.log(2)))
    assert (rc == 0).all() and (rr == 0).all() and (rc > rr).float().mean() == 0


def test_variants_by_hand():
    # log-ratios: chosen -1 - (-2) = +1, rejected -3 - (-2) = -1, so h = 2; beta = 0.5, beta h = 1
    args = (t(-1.0), t(-3.0), t(-2.0), t(-2.0))
    sig = math.log(1 + math.exp(-1.0))  # -log sigma(1) = 0.3132617
    losses, rc, rr = dpo_loss(*args, beta=0.5)
    assert losses.item() == pytest.approx(sig) and rc.item() == pytest.approx(0.5) and rr.item() == pytest.approx(-0.5)
    # conservative DPO, eps = 0.1: 0.9 * (-log sigma(1)) + 0.1 * (-log sigma(-1)) = 0.9 * 0.31326 + 0.1 * 1.31326
    losses, _, _ = dpo_loss(*args, beta=0.5, label_smoothing=0.1)
    assert losses.item() == pytest.approx(0.9 * sig + 0.1 * (sig + 1.0))
    # IPO: (h - 1 / (2 beta))^2 = (2 - 1)^2 = 1
    losses, _, _ = dpo_loss(*args, beta=0.5, loss_type="ipo")
    assert losses.item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="loss_type 'hinge'"):
        dpo_loss(*args, beta=0.5, loss_type="hinge")


def simpo_by_hand(lc, lr, nc, nr, beta, gamma):
    """Meng et al. 2024, eq. 6: -log sigma(beta/|y_c| log pi(y_c|x) - beta/|y_r| log pi(y_r|x) - gamma)."""
    z = beta * lc / nc - beta * lr / nr - gamma
    return math.log(1 + math.exp(-z))


def orpo_by_hand(lc, lr, nc, nr, lam):
    """Hong et al. 2024, eqs. 6-7, with P = exp(log pi(y|x) / |y|) and odds = P / (1 - P) taken literally."""
    pc, pr = math.exp(lc / nc), math.exp(lr / nr)
    log_odds_ratio = math.log((pc / (1 - pc)) / (pr / (1 - pr)))
    return -math.log(pc) + lam * math.log(1 + math.exp(-log_odds_ratio))


# (log pi(y_c|x), log pi(y_r|x), |y_c|, |y_r|): chosen far ahead, rejected ahead (a negative margin), level
LOGPS = [(-2.0, -30.0, 4.0, 10.0), (-20.0, -3.0, 10.0, 3.0), (-6.0, -6.0, 3.0, 3.0)]


@pytest.mark.parametrize("lc,lr,nc,nr", LOGPS)
def test_simpo_against_the_paper(lc, lr, nc, nr):
    losses, rc, rr = simpo_loss(t(lc), t(lr), t(nc), t(nr), beta=2.0, gamma=1.0)
    assert losses.item() == pytest.approx(simpo_by_hand(lc, lr, nc, nr, 2.0, 1.0), rel=1e-5)
    assert rc.item() == pytest.approx(2.0 * lc / nc) and rr.item() == pytest.approx(2.0 * lr / nr)


@pytest.mark.parametrize("lc,lr,nc,nr", LOGPS)
def test_orpo_against_the_paper(lc, lr, nc, nr):
    losses, rc, rr = orpo_loss(t(lc), t(lr), t(nc), t(nr), lam=0.1)
    assert losses.item() == pytest.approx(orpo_by_hand(lc, lr, nc, nr, 0.1), rel=1e-5)
    assert rc.item() == pytest.approx(0.1 * lc / nc) and rr.item() == pytest.approx(0.1 * lr / nr)


def test_log1mexp_is_accurate_at_both_ends_and_orpo_stays_finite_near_probability_one():
    x = torch.tensor([-1e-7, -0.1, -0.7, -5.0, -50.0], dtype=torch.float64)
    assert torch.allclose(log1mexp(x), torch.log(1 - torch.exp(x)), rtol=1e-6)
    assert log1mexp(torch.tensor([-1e-7]))[0].item() == pytest.approx(math.log(1e-7), rel=1e-4)  # 1 - exp(x) cancels in float32
    # a chosen response of per-token probability ~1: its odds are huge, the loss and its gradient finite
    lc = torch.tensor([-1e-9], requires_grad=True)
    losses, _, _ = orpo_loss(lc, t(-9.0), t(3.0), t(3.0), lam=0.1)
    losses.sum().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(lc.grad).all()


def test_response_lengths_count_the_end_of_text_token():
    pairs = [(build_example([3, 4], [5, 6, 7], 1), build_example([3, 4], [8], 1))]
    assert response_lengths(pairs, "cpu").tolist() == [[4.0, 2.0]]  # 3 tokens + <end>, 1 token + <end>


def test_sequence_logps_sum_only_response_tokens_and_ignore_padding():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=10, n_layer=1, n_head=1, n_embd=8)).eval()
    prompt, response = [3, 4, 5], [6, 7]
    alone = collate([build_example(prompt, response, 1)], pad_id=0, device="cpu")
    padded = collate([build_example(prompt, response, 1), build_example([3] * 8, [6], 1)], pad_id=0, device="cpu")
    with torch.no_grad():
        logits_alone, _ = model(alone[0])
        logits_padded, _ = model(padded[0])
        full = torch.log_softmax(model(torch.tensor([prompt + response + [1]]))[0][0], -1)
    # by hand: log p(6 | 3 4 5) + log p(7 | ... 6) + log p(eot | ... 7)
    by_hand = full[2, 6] + full[3, 7] + full[4, 1]
    assert torch.allclose(sequence_logps(logits_alone, alone[1]), by_hand[None], atol=1e-5)
    assert torch.allclose(sequence_logps(logits_padded, padded[1])[0], by_hand, atol=1e-5)


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    policy = GPT(GPTConfig(block_size=16, vocab_size=10, n_layer=1, n_head=2, n_embd=16))
    x, y = collate([build_example([3, 4], [5, 6], 1), build_example([3, 4], [7, 8], 1)], 0, "cpu")
    with torch.no_grad():
        ref = sequence_logps(policy(x)[0], y)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        logps = sequence_logps(policy(x)[0], y)
        loss, _, _ = dpo_loss(logps[:1], logps[1:], ref[:1], ref[1:], beta=0.1)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(2), abs=1e-6) and losses[-1] < losses[0] - 0.05


def test_reference_logps_of_the_needed_pairs_only_equal_the_full_pass_and_leave_nan_elsewhere():
    """dpo.main computes the reference log-probs of the pairs its steps will draw only; those must be the
    values a pass over every pair gives (here each pair's two sequences by hand), and every other row NaN,
    so that a pair read by mistake stops the run (check_finite) instead of training on a zero."""
    from runtime import setup_runtime
    torch.manual_seed(0)
    ref = GPT(GPTConfig(block_size=16, vocab_size=10, n_layer=1, n_head=2, n_embd=16)).eval()
    pairs = dpo.pair_examples([([3, 4], [5, 6], [7]), ([3], [8, 8, 8], [5]), ([4, 4, 4], [6], [7, 7]),
                               ([5], [6, 7], [8])], eot_id=1)
    rt = setup_runtime("cpu", "float32", 0)
    full = dpo.reference_logps(ref, pairs, 0, rt, batch_size=3)
    some = dpo.reference_logps(ref, pairs, 0, rt, batch_size=3, needed={3, 1})
    with torch.no_grad():
        for i, (chosen, rejected) in enumerate(pairs):  # each sequence alone, no padding
            for j, example in enumerate((chosen, rejected)):
                x, y = collate([example], pad_id=0, device="cpu")
                assert full[i, j].item() == pytest.approx(sequence_logps(ref(x)[0], y).item(), abs=1e-5)
    assert torch.allclose(some[[1, 3]], full[[1, 3]], atol=1e-6)
    assert some[[0, 2]].isnan().all()


@pytest.fixture(scope="module")
def tiny_sft(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_dpo")
    prefs = [{"prompt": f"say {w}", "chosen": w, "rejected": "no"} for w in ["apple", "pear", "plum", "fig"] * 3]
    write_records(d / "prefs.jsonl", prefs)
    tiny_sft_checkpoint(d, [r["prompt"] + r["chosen"] + r["rejected"] for r in prefs])
    return d


def run_dpo(d, out, **overrides):
    args = dict(init_from=d / "sft", train_data=d / "prefs.jsonl", val_data=d / "prefs.jsonl", out_dir=out,
                batch_size=4, grad_accum_steps=1, max_iters=4, learning_rate=1e-3, min_lr=1e-3, warmup_iters=0,
                eval_interval=2, log_interval=1, device="cpu", dtype="float32")
    return run_stage("dpo.py", {**args, **overrides})


@pytest.mark.parametrize("loss_type,label_smoothing", [("sigmoid", 0.0), ("sigmoid", 0.1), ("ipo", 0.0)])
def test_smoke_run(tiny_sft, tmp_path, loss_type, label_smoothing):
    result = run_dpo(tiny_sft, tmp_path / "dpo", loss_type=loss_type, label_smoothing=label_smoothing)
    assert result.returncode == 0, result.stdout + result.stderr
    first = json.loads(open(tmp_path / "dpo" / "metrics.jsonl").readline())
    assert first["rewards/chosen"] == 0.0 and first["rewards/rejected"] == 0.0  # step 1 starts at the reference
    if loss_type == "sigmoid" and label_smoothing == 0:
        assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert (tmp_path / "dpo" / "ckpt.pt").exists()


@pytest.mark.parametrize("loss_type", ["simpo", "orpo"])
def test_reference_free_smoke_run(tiny_sft, tmp_path, loss_type):
    result = run_dpo(tiny_sft, tmp_path / "dpo", loss_type=loss_type)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reference-free: no reference model" in result.stdout
    last = [json.loads(line) for line in open(tmp_path / "dpo" / "metrics.jsonl")][-1]
    assert "val/chosen_logratio_median" not in last and math.isfinite(last["val/loss"])
    assert (tmp_path / "dpo" / "ckpt.pt").exists()


@pytest.mark.parametrize("loss_type,loads", [("sigmoid", 2), ("ipo", 2), ("simpo", 1), ("orpo", 1)])
def test_reference_free_losses_never_load_the_reference(tiny_sft, tmp_path, monkeypatch, loss_type, loads):
    """dpo.main in this process, with load_model counted: the policy alone for SimPO and ORPO, and no forward
    pass of a reference (reference_logps) either."""
    calls = {"load_model": 0, "reference_logps": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(dpo, "load_model", counted("load_model", dpo.load_model))
    monkeypatch.setattr(dpo, "reference_logps", counted("reference_logps", dpo.reference_logps))
    args = dict(init_from=tiny_sft / "sft", train_data=tiny_sft / "prefs.jsonl", val_data=tiny_sft / "prefs.jsonl",
                out_dir=tmp_path / "dpo", batch_size=4, grad_accum_steps=1, max_iters=1, eval_interval=1,
                loss_type=loss_type, device="cpu", dtype="float32")
    monkeypatch.setattr("sys.argv", ["dpo.py"] + [f"--{k}={v}" for k, v in args.items()])
    dpo.main()
    assert calls == {"load_model": loads, "reference_logps": 2 * (loads - 1)}  # train and val reference log-probs


@pytest.mark.parametrize("overrides,expected", [
    (dict(loss_type="ipo", label_smoothing=0.1), "label_smoothing = 0.1: conservative DPO's eps applies to loss_type 'sigmoid' only"),
    (dict(loss_type="simpo", max_chosen_drop=0.5), "max_chosen_drop = 0.5: the early stop compares with the reference model"),
    (dict(loss_type="orpo", rpo_alpha=1.0), "rpo_alpha = 1.0: ORPO's loss already has the NLL of the chosen responses"),
])
def test_settings_that_mean_nothing_for_the_loss_are_refused(tiny_sft, tmp_path, overrides, expected):
    result = run_dpo(tiny_sft, tmp_path / "out", **overrides)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("record,expected", [
    ({"prompt": "say fig", "rejected": "no"}, r"prefs.jsonl:2: missing key 'chosen'"),
    ({"prompt": "say fig " * 8, "chosen": "fig", "rejected": "no"}, r"prefs.jsonl:2: pair of \d+ tokens is longer than block_size 48"),
])
def test_bad_data(tiny_sft, tmp_path, record, expected):
    bad = tmp_path / "prefs.jsonl"
    bad.write_text(json.dumps({"prompt": "say fig", "chosen": "fig", "rejected": "no"}) + "\n" + json.dumps(record) + "\n")
    result = run_dpo(tiny_sft, tmp_path / "out", train_data=bad)
    import re
    assert result.returncode == 2 and re.search(expected, result.stderr.strip()), result.stderr
    assert not (tmp_path / "out").exists()


def test_resume_is_bitwise_exact(tiny_sft, tmp_path):
    """4 steps in one go == 2, then --resume=True for 2 more (the reference log-probs are recomputed, exactly)."""
    assert run_dpo(tiny_sft, tmp_path / "full").returncode == 0
    assert run_dpo(tiny_sft, tmp_path / "half", max_iters=2).returncode == 0
    result = run_dpo(tiny_sft, tmp_path / "half", resume=True)
    assert result.returncode == 0, result.stderr
    full, resumed = (torch.load(tmp_path / name / "ckpt.pt", weights_only=True) for name in ("full", "half"))
    assert full["step"] == resumed["step"] == 4
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
