"""sft.py: the loss mask, the loss normalisation, exact resume, DDP equivalence, bad data, atomic
checkpoints, and a smoke run of the shipped toy config."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from checkpoint import load_checkpoint
from data.batches import collate
from sft import build_example, supervised_loss_sum
from tokenizer import CharTokenizer

from conftest import ROOT, run_stage


# ------------------------------------------------------------------------------------------------
# the mask, by hand

def test_mask_supervises_exactly_the_response_and_end_of_text():
    prompt, response, eot = [10, 11, 12], [20, 21], 1
    inputs, labels = build_example(prompt, response, eot)
    # tokens: 10 11 12 20 21 <eot>; position t predicts token t+1
    assert inputs == [10, 11, 12, 20, 21]
    assert labels == [-100, -100, 20, 21, 1]
    # the classic off-by-one: the LAST prompt token (12, position 2) must predict the first answer token
    assert inputs[labels.index(20)] == 12


def test_mask_on_a_real_dialogue():
    tok = CharTokenizer.from_texts(["### Human: hi?\n### Assistant: yo"])
    from data.formats import format_prompt, format_response
    p, r = tok.encode(format_prompt("hi?")), tok.encode(format_response("yo"))
    inputs, labels = build_example(p, r, tok.eot_id)
    supervised = [l for l in labels if l != -100]
    assert tok.decode(supervised) == " yo<end>"
    assert tok.decode(inputs[:labels.index(supervised[0]) + 1]).endswith("### Assistant:")


def test_collate_pads_right_and_ignores_padding():
    x, y = collate([([5, 6, 7], [-100, 7, 1]), ([5], [1])], pad_id=0, device="cpu")
    assert x.tolist() == [[5, 6, 7], [5, 0, 0]]
    assert y.tolist() == [[-100, 7, 1], [1, -100, -100]]


def test_fully_masked_micro_batch_gives_zero_not_nan():
    logits = torch.randn(2, 4, 9, requires_grad=True)
    loss = supervised_loss_sum(logits, torch.full((2, 4), -100))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_loss_sum_is_the_token_sum_of_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, -100, 4], [-100, -100, 0]])
    ref = -(torch.log_softmax(logits[0, 0], -1)[1] + torch.log_softmax(logits[0, 2], -1)[4]
            + torch.log_softmax(logits[1, 2], -1)[0])
    assert torch.allclose(supervised_loss_sum(logits, labels), ref)


# ------------------------------------------------------------------------------------------------
# runs of sft.py on a tiny data set

@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_sft")
    words = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "yam"]
    records = [{"prompt": f"say {w}", "response": f"{w} {w}"} for w in words * 4]
    for name in ("train", "val"):
        with open(d / f"{name}.jsonl", "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
    tok = CharTokenizer.from_texts(["### Human: ### Assistant:\n"] + [r["prompt"] + r["response"] for r in records])
    tok.save(str(d / "vocab.json"))
    return d


def tiny_args(data_dir, out_dir, **overrides):
    args = dict(init_from="scratch", train_data=data_dir / "train.jsonl", val_data=data_dir / "val.jsonl",
                tokenizer=data_dir / "vocab.json", out_dir=out_dir, block_size=64, n_layer=1, n_head=2, n_embd=16,
                batch_size=4, grad_accum_steps=1, max_iters=6, learning_rate=1e-2, min_lr=1e-2, warmup_iters=0,
                eval_interval=3, log_interval=1, sample_interval=0, device="cpu", dtype="float32", seed=7)
    args.update(overrides)
    return [f"--{k}={v}" for k, v in args.items()]


def run_sft(args, launcher=None, check=True):
    result = run_stage("sft.py", args, launcher)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def train_losses(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [r["loss/train"] for r in map(json.loads, f) if "loss/train" in r]


def test_resume_is_bitwise_exact(tiny_data, tmp_path):
    """6 steps in one go == 3 steps, then --resume for 3 more; dropout on, so the RNG state matters."""
    run_sft(tiny_args(tiny_data, tmp_path / "full", dropout=0.1))
    run_sft(tiny_args(tiny_data, tmp_path / "half", dropout=0.1, max_iters=3))
    run_sft(tiny_args(tiny_data, tmp_path / "half", dropout=0.1, max_iters=6, resume=True))
    full, half = load_checkpoint(str(tmp_path / "full")), load_checkpoint(str(tmp_path / "half"))
    assert full["step"] == half["step"] == 6
    for k, v in full["model"].items():
        assert torch.equal(v, half["model"][k]), k
    assert train_losses(tmp_path / "full") == train_losses(tmp_path / "half")


def test_ddp_two_gloo_processes_match_one_process(tiny_data, tmp_path):
    """2 processes x batch 2 (gloo) == 1 process x batch 2 x 2 accumulation steps: same global batch,
    same per-token mean, so the same losses."""
    run_sft(tiny_args(tiny_data, tmp_path / "one", batch_size=2, grad_accum_steps=2))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run_sft(tiny_args(tiny_data, tmp_path / "two", batch_size=2, grad_accum_steps=1), launcher=torchrun)
    one, two = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    assert max(abs(a - b) for a, b in zip(one, two)) <= 1e-5


@pytest.mark.parametrize("content,expected", [
    ('{"prompt": "say fig", "response": "fig"}\n{"prompt": "say fig", "response": \n', r"train.jsonl:2: malformed JSON"),
    ('{"prompt": "say fig", "response": "fig"}\n\n{"prompt": "say fig"}\n', r"train.jsonl:3: missing key 'response'"),
    ("", r"train.jsonl: no records"),
    ('{"prompt": "say fig", "response": "fig"}\n{"prompt": "' + "fig " * 40 + '", "response": "fig"}\n',
     r"train.jsonl:2: example of \d+ tokens is longer than block_size 64"),
])
def test_bad_data_is_one_clear_line_and_writes_nothing(tiny_data, tmp_path, content, expected):
    bad = tmp_path / "train.jsonl"
    bad.write_text(content)
    out = tmp_path / "out"
    result = run_sft(tiny_args(tiny_data, out, train_data=bad), check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    import re
    assert re.search(expected, lines[0]), lines[0]
    assert not out.exists()


def test_never_overwrites_a_run_unless_asked(tiny_data, tmp_path):
    run_sft(tiny_args(tiny_data, tmp_path / "run", max_iters=3))
    before = load_checkpoint(str(tmp_path / "run"))
    result = run_sft(tiny_args(tiny_data, tmp_path / "run", max_iters=3, seed=8), check=False)
    assert result.returncode == 2 and "already holds a run" in result.stderr
    after = load_checkpoint(str(tmp_path / "run"))
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    run_sft(tiny_args(tiny_data, tmp_path / "run", max_iters=3, seed=8, overwrite=True))


def test_overwrite_that_fails_before_its_first_checkpoint_gives_the_old_run_back(tiny_data, tmp_path):
    run_sft(tiny_args(tiny_data, tmp_path / "run", max_iters=3))
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    result = run_sft(tiny_args(tiny_data, tmp_path / "run", overwrite=True, learning_rate=1e30, min_lr=1e30,
                               grad_clip=0.0, eval_interval=5), check=False)  # blows up before step 5's checkpoint
    assert result.returncode == 2 and "the previous run is back" in result.stdout, result.stdout + result.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    assert os.listdir(tmp_path) == ["run"]


def test_nan_stops_with_a_clear_message_and_keeps_the_last_finite_checkpoint(tiny_data, tmp_path):
    """Two good steps, then a learning rate that blows the weights up: the stage stops naming the step, and the
    checkpoint on disk is the last finite one (load_checkpoint refuses non-finite weights)."""
    run_sft(tiny_args(tiny_data, tmp_path / "nan", eval_interval=1, max_iters=2))
    result = run_sft(tiny_args(tiny_data, tmp_path / "nan", learning_rate=1e30, min_lr=1e30, grad_clip=0.0,
                               eval_interval=1, max_iters=10, resume=True), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "step 3" in lines[0] and "last finite checkpoint" in lines[0], lines[0]
    assert load_checkpoint(str(tmp_path / "nan"))["step"] == 2


def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path):
    """Save a small checkpoint, start writing a large one, kill -9 in the middle: the small one loads."""
    script = f"""
import sys, torch
sys.path.insert(0, {ROOT!r})
from dataclasses import dataclass
from checkpoint import save_checkpoint
from model import GPT, GPTConfig
@dataclass
class C:
    note: str = "x"
small = GPT(GPTConfig(block_size=8, vocab_size=8, n_layer=1, n_head=1, n_embd=8))
save_checkpoint({str(tmp_path)!r}, small, C(), step=1, tokenizer='x', stage='sft')
print("saved", flush=True)
big = GPT(GPTConfig(block_size=8, vocab_size=400_000, n_layer=1, n_head=1, n_embd=128))
while True:
    save_checkpoint({str(tmp_path)!r}, big, C(), step=2, tokenizer='x', stage='sft')
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saved"
    deadline = time.time() + 60
    while not any(n.startswith(".ckpt.pt.tmp-") for n in os.listdir(tmp_path)):  # the big write has begun
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(str(tmp_path))
    assert ckpt["step"] in (1, 2)  # whole, whichever write completed last
    if ckpt["step"] == 1:
        assert ckpt["model_args"]["vocab_size"] == 8


def test_toy_config_smoke_run(tmp_path):
    """The shipped config/sft_toy.py runs end to end for a few steps on freshly generated toy data."""
    data = tmp_path / "toy"
    subprocess.run([sys.executable, "-m", "data.toy.prepare", "--out_dir", str(data)], cwd=ROOT, check=True,
                   capture_output=True)
    result = run_sft(["--config", os.path.join(ROOT, "config", "sft_toy.py"), f"--out_dir={tmp_path / 'sft'}",
                      f"--train_data={data / 'sft_train.jsonl'}", f"--val_data={data / 'sft_val.jsonl'}",
                      f"--tokenizer={data / 'vocab.json'}", "--max_iters=4", "--eval_interval=2", "--log_interval=2",
                      "--sample_interval=4", "--num_samples=2", "--eval_max_examples=32"])
    assert "[sample step 4" in result.stdout
    for name in ("ckpt.pt", "metrics.jsonl", "loss.png"):
        assert (tmp_path / "sft" / name).exists()
