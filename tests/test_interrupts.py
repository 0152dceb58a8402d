"""A run stopped from outside -- Ctrl-C, SIGTERM (a scheduler, torchrun, `kill`), kill -9 -- keeps its last
checkpoint loadable, leaves no temporary file behind (kill -9's orphan is swept by the next run in that
out_dir), and --resume=True continues it to the end. And a run that finishes ends cleanly: run_cli frees what
main() left in reference cycles (a DDP wrapper and its gloo process group) before the interpreter shuts down."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from checkpoint import load_checkpoint
from conftest import ROOT, run_stage, write_records
from tokenizer import CharTokenizer

TEMP_FILE = re.compile(r"\..+\.tmp-\d+-[0-9a-f]{8}")  # atomic_io's temporary files


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("interrupt_data")
    records = [{"prompt": f"say {w}", "response": f"{w} {w}"} for w in ["apple", "pear", "plum", "fig"] * 4]
    write_records(d / "train.jsonl", records)
    CharTokenizer.from_texts(["### Human: ### Assistant:\n"] + [r["prompt"] + r["response"] for r in records]).save(
        str(d / "vocab.json"))
    return d


def sft_flags(d, out, max_iters):
    """A tiny SFT run that writes a checkpoint at every step, so that a signal often lands during a write."""
    args = dict(init_from="scratch", train_data=d / "train.jsonl", val_data=d / "train.jsonl", tokenizer=d / "vocab.json",
                out_dir=out, block_size=64, n_layer=1, n_head=2, n_embd=16, batch_size=4, grad_accum_steps=1,
                max_iters=max_iters, learning_rate=1e-3, min_lr=1e-3, warmup_iters=0, eval_interval=1, log_interval=1,
                sample_interval=0, eval_max_examples=4, device="cpu", dtype="float32")
    return [f"--{k}={v}" for k, v in args.items()]


def start_and_stop(d, out, signum):
    """Start a long run, wait for its first checkpoint, let it write a few more, then send signum."""
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "sft.py"), *sft_flags(d, out, 100_000)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not os.path.exists(out / "ckpt.pt"):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr


def temp_files(out):
    return [n for n in os.listdir(out) if TEMP_FILE.fullmatch(n)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_cleanly_and_resume_continues(data, tmp_path, signum):
    out = tmp_path / "run"
    code, stderr = start_and_stop(data, out, signum)
    lines = stderr.strip().splitlines()
    assert code == 128 + signum and len(lines) == 1, stderr
    assert lines[0] == f"error: stopped by {signal.Signals(signum).name}; the checkpoints written so far are intact"
    assert temp_files(out) == []
    step = load_checkpoint(str(out))["step"]
    assert step >= 1
    result = run_stage("sft.py", sft_flags(data, out, step + 2) + ["--resume=True"])
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(str(out))["step"] == step + 2


def test_kill_9_keeps_a_loadable_checkpoint_and_resume_sweeps_the_orphan(data, tmp_path):
    out = tmp_path / "run"
    code, _ = start_and_stop(data, out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    step = load_checkpoint(str(out))["step"]  # whole: the previous file, or the new one, never a mix
    # whatever the kill left, make sure there is an orphan: a temp file of a process that no longer exists
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / f".ckpt.pt.tmp-{dead.pid}-0123abcd").write_bytes(b"half a checkpoint")
    result = run_stage("sft.py", sft_flags(data, out, step + 2) + ["--resume=True"])
    assert result.returncode == 0, result.stderr
    assert temp_files(out) == [] and load_checkpoint(str(out))["step"] == step + 2



SWALLOWED = """
import signal, sys, time
sys.path.insert(0, {root!r})
from configurator import run_cli, stop_if_signalled

class Finaliser:
    def __del__(self):
        signal.raise_signal(signal.{name})  # its handler runs here, where an exception cannot propagate

def main():
    Finaliser()  # collected at once
    for step in range(300):  # 30 s of "training"
        stop_if_signalled()
        time.sleep(0.1)
    print("the run went on")

run_cli(main)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_that_lands_in_a_finaliser_still_stops_the_run(signum):
    # the flake this reproduces: a Ctrl-C whose handler ran in a weakref callback of matplotlib's garbage was
    # printed as "Exception ignored" and lost (about 1 run in 15), and sft.py trained on instead of stopping
    name = signal.Signals(signum).name
    result = subprocess.run([sys.executable, "-c", SWALLOWED.format(root=ROOT, name=name)],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 128 + signum and result.stdout == "", (result.stdout, result.stderr)
    assert result.stderr.strip().splitlines() == [f"error: stopped by {name}; the checkpoints written so far are intact"]


CYCLE_LEFT_BY_MAIN = """
import gc, sys, weakref
sys.path.insert(0, {root!r})
from configurator import run_cli

class Node:
    pass

gc.disable()  # no automatic collection: only run_cli's own may free the cycle
freed = []

def main():
    node = Node()
    node.me = node  # a reference cycle, as a DistributedDataParallel wrapper is in
    weakref.finalize(node, freed.append, True)

run_cli(main)
print("freed" if freed else "alive at shutdown")
"""


def test_run_cli_frees_the_reference_cycles_main_leaves_before_shutdown():
    # left to interpreter shutdown, a DDP wrapper's gloo process group aborted a finished torchrun rank now and
    # then ("terminate called without an active exception" in tests/test_kto.py's DDP smoke run)
    result = subprocess.run([sys.executable, "-c", CYCLE_LEFT_BY_MAIN.format(root=ROOT)], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 0 and result.stdout == "freed\n", (result.stdout, result.stderr)


@pytest.mark.parametrize("stage", ["sft.py", "reward.py", "ppo.py", "grpo.py", "dpo.py", "kto.py"])
def test_every_training_loop_checks_for_a_swallowed_signal(stage):
    source = open(os.path.join(ROOT, stage)).read()
    loop = re.search(r"\n    (while step < config\.max_iters|for it in range\(.*\)):\n        (.*)\n", source)
    assert loop and loop.group(2).startswith("stop_if_signalled()"), f"{stage}: the loop's first line is not stop_if_signalled()"
