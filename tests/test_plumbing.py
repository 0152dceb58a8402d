"""The shared plumbing: atomic writes, gradient-accumulation slices and loss scale, the metric reduction and
the non-finite guard, the data-to-tensor helpers, renamed config keys and range checks, out_dir and its
overwrite, orphaned temporary files, and the checks on loading a checkpoint."""

import contextlib
import os
import stat
from dataclasses import dataclass

import pytest
import torch

from atomic_io import atomic_save_figure, atomic_write, atomic_write_text
from configurator import ConfigError, parse_config
from data.batches import collate, collate_sequences, left_pad, right_pad, tokenize_pairs, tokenize_prompts
from data.formats import DataError, format_prompt, format_response
from runtime import backward_share, check_finite, micro_batches, reduce_metrics, setup_runtime
from tokenizer import CharTokenizer


# ------------------------------------------------------------------------------------------------
# atomic writes

def test_atomic_write_replaces_whole_and_uses_normal_permissions(tmp_path):
    path = tmp_path / "table.md"
    old_umask = os.umask(0o022)
    try:
        atomic_write_text(str(path), "first\n")
        atomic_write_text(str(path), "second\n")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "second\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # 0o666 minus the umask, like open(path, "w")
    assert os.listdir(tmp_path) == ["table.md"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_write_text(str(path), "good")

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(str(path), broken)
    assert path.read_text() == "good"
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_atomic_save_figure_writes_a_png(tmp_path):
    from logger import pyplot
    fig, ax = pyplot().subplots()
    ax.plot([0, 1], [1, 0])
    atomic_save_figure(fig, str(tmp_path / "curve.png"))
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curve.png"]


# ------------------------------------------------------------------------------------------------
# gradient accumulation and DDP: which items each rank and micro-step take

@dataclass
class FakeRank:
    rank: int
    world_size: int
    ddp: bool = True


class FakeDDP:
    """Records the no_sync() contexts handed out, as DistributedDataParallel would enter them."""

    def __init__(self):
        self.entered = []

    @contextlib.contextmanager
    def no_sync(self):
        self.entered.append("no_sync")
        yield


@pytest.mark.parametrize("world_size,grad_accum_steps,batch_size", [(1, 1, 4), (1, 3, 2), (2, 3, 2), (4, 2, 1)])
def test_micro_batches_cover_the_global_batch_once(world_size, grad_accum_steps, batch_size):
    items = list(range(world_size * grad_accum_steps * batch_size))
    seen = []
    for rank in range(world_size):
        model = FakeDDP()
        taken = []
        for mb, context in micro_batches(model, items, batch_size, FakeRank(rank, world_size, ddp=world_size > 1)):
            with context:
                taken.append(mb)
        assert len(taken) == grad_accum_steps and all(len(mb) == batch_size for mb in taken)
        # gradients synchronise once per optimizer step: no_sync on every micro-step but the last
        assert model.entered == (["no_sync"] * (grad_accum_steps - 1) if world_size > 1 else [])
        seen += [i for mb in taken for i in mb]
        # micro-step m of rank r is items[(m * world_size + r) * batch_size:][:batch_size], written out by hand
        for m, mb in enumerate(taken):
            start = (m * world_size + rank) * batch_size
            assert mb == items[start:start + batch_size]
    assert sorted(seen) == items


def test_backward_share_accumulates_the_mean_of_the_whole_step():
    """Two micro-batches of per-item losses, each backpropagated as its share: the accumulated gradient is
    that of the mean over all four items computed in one go."""
    rt = setup_runtime("cpu", "float32", seed=0)
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    data = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5], [2.0, 0.0]])
    for mb in (data[:2], data[2:]):
        backward_share(((mb @ w) ** 2).sum(), len(data), rt)
    w_ref = w.detach().clone().requires_grad_(True)
    ((data @ w_ref) ** 2).mean().backward()
    assert torch.allclose(w.grad, w_ref.grad)


def test_reduce_metrics_and_check_finite():
    assert reduce_metrics({"a": torch.tensor(3.0), "b": torch.tensor(1)}, 2) == {"a": 1.5, "b": 0.5}
    check_finite({"loss": 0.5}, step=3, out_dir="out/x")
    with pytest.raises(FloatingPointError, match=r"^loss/val became nan at step 7; stopping. The last finite checkpoint stays in out/x$"):
        check_finite({"loss/train": 1.0, "loss/val": float("nan")}, step=7, out_dir="out/x")


# ------------------------------------------------------------------------------------------------
# data to tensors

def test_padding_left_and_right():
    assert right_pad([[5, 6, 7], [8]], 0).tolist() == [[5, 6, 7], [8, 0, 0]]
    idx, mask = left_pad([[5, 6, 7], [8]], 0)
    assert idx.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    x, y = collate([([5, 6], [-100, 9]), ([7], [9])], pad_id=0, device="cpu")
    assert x.tolist() == [[5, 6], [7, 0]] and y.tolist() == [[-100, 9], [9, -100]]
    x, lengths = collate_sequences([[1, 2, 3], [4]], pad_id=0, device="cpu")
    assert x.tolist() == [[1, 2, 3], [4, 0, 0]] and lengths.tolist() == [3, 1]


def test_one_pair_tokeniser_for_dpo_and_the_reward_model():
    tok = CharTokenizer.from_texts(["### Human: ### Assistant:\nabcdefgh"])
    records = [{"prompt": "ab", "chosen": "cde", "rejected": "f"}, {"prompt": "ab", "chosen": "g", "rejected": "g"}]
    pairs, n_identical, n_long = tokenize_pairs(records, tok, 64, "p.jsonl", skip_long=False, shifted=True)
    assert (n_identical, n_long) == (1, 0)
    prompt, chosen, rejected = pairs[0]
    assert prompt == tok.encode(format_prompt("ab"))
    assert chosen == tok.encode(format_response("cde")) and rejected == tok.encode(format_response("f"))  # no end-of-text
    # the longer sequence, prompt + " cde" + end-of-text, decides whether a pair fits
    n = len(prompt) + 4 + 1
    assert tokenize_pairs(records, tok, n, "p.jsonl", False, shifted=False)[0] == pairs  # the reward model reads all n
    assert tokenize_pairs(records, tok, n - 1, "p.jsonl", False, shifted=True)[0] == pairs  # DPO reads n - 1
    with pytest.raises(DataError, match=rf"^p.jsonl:1: pair of {n} tokens is longer than block_size {n - 1}; "):
        tokenize_pairs(records, tok, n - 1, "p.jsonl", False, shifted=False)
    assert tokenize_pairs(records + [{"prompt": "a", "chosen": "b", "rejected": "c"}], tok, n - 1, "p.jsonl", True,
                          shifted=False)[2] == 1


def test_prompts_must_leave_room_for_the_response():
    tok = CharTokenizer.from_texts(["### Human: ### Assistant:\nab"])
    n = len(tok.encode(format_prompt("ab")))
    kept, ids, n_long = tokenize_prompts([{"prompt": "a"}, {"prompt": "ab"}], tok, n + 4, 4, "r.jsonl", skip_long=False)
    assert [r["prompt"] for r in kept] == ["a", "ab"] and ids[1] == tok.encode(format_prompt("ab")) and n_long == 0
    with pytest.raises(DataError, match=r"^r.jsonl:2: prompt of \d+ tokens leaves no room for max_new_tokens 5"):
        tokenize_prompts([{"prompt": "a"}, {"prompt": "ab"}], tok, n + 4, 5, "r.jsonl", skip_long=False)
    assert tokenize_prompts([{"prompt": "a"}, {"prompt": "ab"}], tok, n + 4, 5, "r.jsonl", skip_long=True)[2] == 1


# ------------------------------------------------------------------------------------------------
# one name for one meaning

def test_renamed_keys_name_the_new_one(tmp_path):
    from dpo import DPOConfig
    from ppo import PPOConfig
    with pytest.raises(ConfigError, match=r"--total_iters: config key 'total_iters' was renamed to 'max_iters'"):
        parse_config(PPOConfig, ["--total_iters=3"])
    path = tmp_path / "old.py"
    path.write_text("eval_max_pairs = 10\n")
    with pytest.raises(ConfigError, match=r"old.py: config key 'eval_max_pairs' was renamed to 'eval_max_examples'"):
        parse_config(DPOConfig, ["--config", str(path)])
    assert parse_config(PPOConfig, ["--beta1=0.8"]).beta1 == 0.8  # PPO's AdamW betas are settings like everywhere


# ------------------------------------------------------------------------------------------------
# precision on CPUs with and without bf16 instructions

def test_auto_dtype_and_the_slow_bf16_warning(monkeypatch, capsys):
    import runtime
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert setup_runtime("cpu", "auto", seed=0).dtype == torch.bfloat16
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)  # an AVX2-only CPU: bf16 matmuls ~100x slower
    assert setup_runtime("cpu", "auto", seed=0).dtype == torch.float32
    assert capsys.readouterr().err == ""
    assert setup_runtime("cpu", "bfloat16", seed=0).dtype == torch.bfloat16  # asked for: kept, with one warning line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: this CPU") and "--dtype=float32" in err[0]


# ------------------------------------------------------------------------------------------------
# out_dir, orphaned temporary files, checkpoints that say which stage wrote them

def test_overwrite_moves_the_old_run_aside_until_the_first_checkpoint(tmp_path):
    import checkpoint
    from model import GPT, GPTConfig
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("old run\n")
    with pytest.raises(FileExistsError, match="already holds a run"):
        checkpoint.prepare_out_dir(str(out), resume=False, overwrite=False, inputs={})
    with pytest.raises(ValueError, match="holds this run's input --train_data="):
        checkpoint.prepare_out_dir(str(out), resume=False, overwrite=True, inputs={"train_data": str(out / "metrics.jsonl")})
    # stopped before its first checkpoint (here: at exit, as atexit would): the old run comes back, whole
    checkpoint.prepare_out_dir(str(out), resume=False, overwrite=True, inputs={})
    assert os.listdir(out) == [] and (tmp_path / "run.replaced" / "metrics.jsonl").read_text() == "old run\n"
    (out / "metrics.jsonl").write_text("new run, unfinished\n")
    checkpoint.restore_replaced_run(os.path.realpath(out))
    assert os.listdir(tmp_path) == ["run"] and (out / "metrics.jsonl").read_text() == "old run\n"
    # the first checkpoint of the new run: only now does the old one go
    checkpoint.prepare_out_dir(str(out), resume=False, overwrite=True, inputs={})
    model = GPT(GPTConfig(block_size=8, vocab_size=8, n_layer=1, n_head=1, n_embd=8))
    checkpoint.save_checkpoint(str(out), model, StandIn(), step=1, tokenizer="gpt2", stage="sft")
    assert os.listdir(tmp_path) == ["run"] and os.listdir(out) == ["ckpt.pt"]
    checkpoint.restore_replaced_run(os.path.realpath(out))  # what atexit then does: nothing
    assert os.listdir(out) == ["ckpt.pt"]


@dataclass
class StandIn:
    note: str = "a config"


def test_orphaned_temp_files_of_dead_processes_are_swept(tmp_path):
    import subprocess
    from atomic_io import remove_orphaned_temp_files
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan, alive, other = f".ckpt.pt.tmp-{dead.pid}-0123abcd", f".ckpt.pt.tmp-{os.getpid()}-0123abcd", ".ckpt.pt.tmp-x"
    for name in (orphan, alive, other):
        (tmp_path / name).write_text("")
    assert remove_orphaned_temp_files(str(tmp_path)) == [orphan]
    assert sorted(os.listdir(tmp_path)) == sorted([alive, other])


def test_checkpoints_are_checked_when_loaded(tmp_path):
    from checkpoint import load_checkpoint, load_model, save_checkpoint
    from model import GPT, GPTConfig
    model = GPT(GPTConfig(block_size=8, vocab_size=8, n_layer=1, n_head=1, n_embd=8))
    save_checkpoint(str(tmp_path), model, StandIn(), step=1, tokenizer="gpt2", stage="reward")
    assert load_checkpoint(str(tmp_path), stages=("reward",))["stage"] == "reward"
    with pytest.raises(ValueError, match=r"^--init_from=.*: a checkpoint of reward.py; expected one of sft.py, dpo.py, kto.py, ppo.py, grpo.py$"):
        load_model(str(tmp_path), key="init_from")
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"weight 'transformer.wte.weight' became NaN or infinite by step 2"):
        save_checkpoint(str(tmp_path), model, StandIn(), step=2, tokenizer="gpt2", stage="reward")
    assert load_checkpoint(str(tmp_path))["step"] == 1  # the last finite one stays
    data = (tmp_path / "ckpt.pt").read_bytes()
    (tmp_path / "ckpt.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        load_checkpoint(str(tmp_path))


@pytest.mark.parametrize("flag,expected", [
    ("--max_iters=0", r"^--max_iters: max_iters = 0: expected >= 1$"),
    ("--learning_rate=1e999", r"^--learning_rate: learning_rate = inf: expected a finite number$"),
    ("--beta1=1", r"^--beta1: beta1 = 1.0: expected in \[0, 1\)$"),
    ("--dtype=float64", r"^--dtype: dtype = 'float64': expected one of 'auto', 'float32', 'bfloat16', 'float16'$"),
    ("--beta=0", r"^--beta: beta = 0.0: expected > 0$"),
])
def test_settings_are_checked_against_their_ranges(flag, expected):
    from configurator import above

    @dataclass
    class Ranged:
        max_iters: int = 10  # steps
        learning_rate: float = 1e-3  # step size
        beta1: float = 0.9  # AdamW beta1
        dtype: str = "auto"  # precision
        beta: float = 0.1  # a stage's own setting

    with pytest.raises(ConfigError, match=expected):
        parse_config(Ranged, [flag], ranges={"beta": above(0)})


def test_a_setting_from_a_config_file_names_the_file(tmp_path):
    @dataclass
    class Ranged:
        max_iters: int = 10  # steps

    path = tmp_path / "cfg.py"
    path.write_text("max_iters = -5\n")
    with pytest.raises(ConfigError, match=rf"^{path}: max_iters = -5: expected >= 1$"):
        parse_config(Ranged, ["--config", str(path)])
    path.write_text("max_iters = (\n")
    with pytest.raises(ConfigError, match=rf"^{path}:1: "):
        parse_config(Ranged, ["--config", str(path)])
