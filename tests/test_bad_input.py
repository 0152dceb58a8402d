"""Bad input, stage by stage: hostile but fair mistakes a user makes on the command line, in a config file, in
a data file or with a checkpoint, each run as a subprocess of the real stage script (sft.py, reward.py, dpo.py,
ppo.py, evaluate.py) on tiny inputs (a char vocabulary, a 1-layer GPT, a handful of JSONL records).

Every refusal must
  1. end with exit status 2 and exactly one non-empty line on stderr (TINYRLHF_TRACEBACK unset), starting with
     "error: " and naming what is wrong: the config key, or the file (and "path:LINE" for a bad record);
  2. lose nothing: every file under the shared inputs and under the test's own directory (the out_dir, when it
     existed, and the test's own bad inputs) has the same bytes afterwards, no entry is added or removed (so a
     fresh out_dir is not created and no OUT.replaced is left), and no atomic-write temp file is left behind.
The settings are range-checked before anything runs; bad data files and checkpoints are refused before out_dir
is touched; an existing run is never replaced without --overwrite=True, and not even with it when the new run's
settings or inputs are bad. One positive case checks that --overwrite=True with good settings does replace a run.
"""

import gzip
import hashlib
import json
import os
import re
import shutil

import pytest
import torch

from conftest import run_stage, tiny_sft_checkpoint, write_records

SCRIPTS = {"sft": "sft.py", "reward": "reward.py", "dpo": "dpo.py", "ppo": "ppo.py", "evaluate": "evaluate.py"}
STAGES = ("sft", "reward", "dpo", "ppo")
WORDS = ["apple", "pear", "plum", "fig"]
TEMP_FILE = re.compile(r".*\.tmp-\d+-[0-9a-f]{8}")  # what atomic_io.atomic_write writes before its rename
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: --device=cuda is valid")


@pytest.fixture(autouse=True)
def no_traceback(monkeypatch):
    """The one-line error is what a user sees; TINYRLHF_TRACEBACK=1 would turn it into a traceback."""
    monkeypatch.delenv("TINYRLHF_TRACEBACK", raising=False)


# ------------------------------------------------------------------------------------------------
# helpers

def snapshot(*roots):
    """{root: None if it does not exist, else {relative path: sha256 of a file's bytes, or '<dir>'}} -- every
    entry under each root, so that an added, removed or changed file or directory shows up as a difference."""
    out = {}
    for root in map(str, roots):
        if not os.path.exists(root):
            out[root] = None
            continue
        if os.path.isfile(root):
            with open(root, "rb") as f:
                out[root] = {".": hashlib.sha256(f.read()).hexdigest()}
            continue
        entries = {}
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                entries[os.path.relpath(os.path.join(dirpath, name), root)] = "<dir>"
            for name in filenames:
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    entries[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
        out[root] = entries
    return out


def assert_unchanged(before, after, cmd):
    for root in before:
        b, a = before[root], after[root]
        if b is None or a is None:
            assert a == b, f"{root} {'was created' if b is None else 'was removed'}\n{cmd}"
            continue
        added, removed = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
        assert not (added or removed or changed), f"under {root}: added {added}, removed {removed}, changed {changed}\n{cmd}"


def assert_no_temp_files(directory):
    for dirpath, _, filenames in os.walk(directory):
        leftovers = [n for n in filenames if TEMP_FILE.fullmatch(n)]
        assert not leftovers, f"atomic-write temp files left in {dirpath}: {leftovers}"


def command_line(result):
    return " ".join(["python"] + [os.path.basename(str(result.args[1]))] + [str(a) for a in result.args[2:]])


def assert_one_line_error(result, *needles):
    """Exit status 2 and exactly one non-empty stderr line, 'error: ...', holding every needle (a substring, or a
    compiled regex searched for). Returns the line."""
    cmd = command_line(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), \
        f"{cmd}\nexit status {result.returncode}, stderr:\n{result.stderr}\nstdout (tail):\n{result.stdout[-2000:]}"
    for needle in needles:
        found = needle.search(lines[0]) if isinstance(needle, re.Pattern) else needle in lines[0]
        assert found, f"{cmd}\nthe error line does not hold {needle!r}:\n{lines[0]}"
    return lines[0]


def stage_args(stage, w, out):
    """Good settings for a tiny, fast run of each stage on the shared inputs w, writing to out."""
    system = dict(out_dir=out, device="cpu", dtype="float32")
    loop = dict(batch_size=2, max_iters=1, eval_interval=1, log_interval=1, **system)
    if stage == "sft":
        return dict(init_from=w / "sft", train_data=w / "sft.jsonl", val_data=w / "sft.jsonl", grad_accum_steps=1,
                    warmup_iters=0, sample_interval=0, **loop)
    if stage == "reward":
        return dict(init_from=w / "sft", train_data=w / "prefs.jsonl", val_data=w / "prefs.jsonl",
                    rl_prompts=w / "prompts.jsonl", grad_accum_steps=1, warmup_iters=0, norm_samples=4, max_new_tokens=4,
                    **loop)
    if stage == "dpo":
        return dict(init_from=w / "sft", train_data=w / "prefs.jsonl", val_data=w / "prefs.jsonl",
                    eval_prompts=w / "prompts.jsonl", grad_accum_steps=1, warmup_iters=0, max_new_tokens=4, **loop)
    if stage == "ppo":
        return dict(sft_dir=w / "sft", reward_dir=w / "rm", prompts=w / "prompts.jsonl", eval_prompts=w / "prompts.jsonl",
                    minibatch_size=2, ppo_epochs=1, max_new_tokens=4, sample_interval=0, **loop)
    if stage == "evaluate":
        return dict(checkpoints=f"sft:{w / 'sft'}", reference=w / "sft", reward_dir=w / "rm",
                    eval_prompts=w / "prompts.jsonl", demos=w / "sft.jsonl", samples_per_prompt=1, max_new_tokens=4,
                    batch_size=4, **system)
    raise KeyError(stage)


def run(stage, w, out, flags=(), drop=(), **overrides):
    """The stage on its good settings less the keys in drop, with overrides, after extra flags (--config FILE)."""
    args = {k: v for k, v in {**stage_args(stage, w, out), **overrides}.items() if k not in drop}
    return run_stage(SCRIPTS[stage], list(flags) + [f"--{k}={v}" for k, v in args.items()], timeout=120)


def refused(stage, w, tmp_path, *needles, out=None, flags=(), drop=(), **overrides):
    """Run a stage that must refuse: one clear line holding every needle, and nothing changed under the shared
    inputs w or under tmp_path (the test's own inputs and out_dir: a fresh out_dir stays absent)."""
    out = out or tmp_path / "out"
    out_existed = out.exists()
    before = snapshot(w, tmp_path)
    result = run(stage, w, out, flags, drop, **overrides)
    line = assert_one_line_error(result, *needles)
    assert_unchanged(before, snapshot(w, tmp_path), command_line(result))
    if not out_existed:
        assert not out.exists(), f"{command_line(result)}\ncreated the fresh out_dir {out}"
    assert_no_temp_files(out)
    return line


def edit_checkpoint(src, dst, edit):
    """dst/ckpt.pt: src's checkpoint, loaded with torch.load, changed in place by edit(ckpt), saved back."""
    ckpt = torch.load(src / "ckpt.pt", map_location="cpu", weights_only=True)
    edit(ckpt)
    dst.mkdir(parents=True)
    torch.save(ckpt, dst / "ckpt.pt")
    return dst


def poison(ckpt):
    """A NaN in the first floating-point weight of the model."""
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name].view(-1)[0] = float("nan")


def old_run(directory, w):
    """A previous run in directory: a checkpoint and a metrics file that must survive."""
    directory.mkdir()
    shutil.copy(w / "sft" / "ckpt.pt", directory / "ckpt.pt")
    (directory / "metrics.jsonl").write_text('{"step": 1, "note": "the previous run"}\n')
    return directory


# ------------------------------------------------------------------------------------------------
# the shared inputs, built once

@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """A char vocabulary, an SFT checkpoint (sft/) and a normalised reward model (rm/) of 1-layer GPTs, a data file
    of each kind, bad copies of both checkpoints (bad/{sft,rm}_{truncated,empty,nan}) and reward models never
    normalised (rm_unnormalised/) or normalised with std 0 (rm_std0/) or NaN (rm_stdnan/)."""
    d = tmp_path_factory.mktemp("inputs")
    write_records(d / "sft.jsonl", [{"prompt": f"say {x}", "response": f"{x} {x}"} for x in WORDS])
    write_records(d / "prefs.jsonl", [{"prompt": f"say {x}", "chosen": x, "rejected": "no"} for x in WORDS])
    write_records(d / "prompts.jsonl", [{"prompt": f"say {x}"} for x in WORDS])
    tiny_sft_checkpoint(d, [f"say {x} {x} no" for x in WORDS], block_size=64, scalar_head_dir="rm")
    edit_checkpoint(d / "rm", d / "rm_unnormalised", lambda c: c.pop("reward_norm"))
    edit_checkpoint(d / "rm", d / "rm_std0", lambda c: c["reward_norm"].update(raw_std=0.0))
    edit_checkpoint(d / "rm", d / "rm_stdnan", lambda c: c["reward_norm"].update(raw_std=float("nan")))
    for name in ("sft", "rm"):
        data = (d / name / "ckpt.pt").read_bytes()
        (d / "bad" / f"{name}_truncated").mkdir(parents=True)
        (d / "bad" / f"{name}_truncated" / "ckpt.pt").write_bytes(data[:len(data) // 2])
        (d / "bad" / f"{name}_empty").mkdir()
        (d / "bad" / f"{name}_empty" / "ckpt.pt").write_bytes(b"")
        edit_checkpoint(d / name, d / "bad" / f"{name}_nan", poison)
    return d


# ------------------------------------------------------------------------------------------------
# settings outside their range, from a flag: "error: --KEY: KEY = VALUE: expected ..."

RANGE_CASES = [  # the shared ranges (configurator.RANGES) and each stage's own, spread over the stages
    ("sft", "batch_size", "0", ">= 1"),
    ("reward", "grad_accum_steps", "0", ">= 1"),
    ("reward", "learning_rate", "0", "> 0"),
    ("reward", "beta1", "1.0", "in [0, 1)"),
    ("reward", "norm_samples", "1", ">= 2"),
    ("dpo", "max_iters", "-3", ">= 1"),
    ("dpo", "eval_interval", "0", ">= 1"),
    ("dpo", "beta", "-0.1", "> 0"),
    ("dpo", "label_smoothing", "0.5", "in [0, 0.5)"),
    ("dpo", "loss_type", "foo", "one of 'sigmoid', 'ipo', 'simpo', 'orpo'"),
    ("ppo", "sample_interval", "-1", ">= 0"),
    ("ppo", "kl_coef", "-1", ">= 0"),
    ("ppo", "temperature", "0", "> 0"),
    ("ppo", "temperature", "-1", "> 0"),
    ("ppo", "value_init", "foo", "one of 'reward', 'sft'"),
    ("ppo", "learning_rate", "1e999", None),
]


@pytest.mark.parametrize("stage,key,value,expected",
                         [pytest.param(*c, id=f"{c[0]}-{c[1]}={c[2]}") for c in RANGE_CASES])
def test_a_setting_out_of_range_is_refused_before_anything_runs(w, tmp_path, stage, key, value, expected):
    expected = "a finite number" if expected is None else expected  # 1e999 parses as inf
    pattern = re.compile(rf"^error: --{key}: {key} = \S+: expected {re.escape(expected)}$")
    refused(stage, w, tmp_path, pattern, **{key: value})


@pytest.mark.parametrize("stage,text,key,expected", [
    pytest.param("ppo", "kl_coef = 0.1\ntemperature = 0.0\n", "temperature", "> 0", id="ppo-temperature=0"),
])
def test_a_setting_out_of_range_in_a_config_file_names_the_file(w, tmp_path, stage, text, key, expected):
    path = tmp_path / "my_config.py"
    path.write_text(text)
    # "error: PATH: KEY = VALUE: expected ...", the good flags (which would override the file) without the key
    pattern = re.compile(rf"^error: {re.escape(str(path))}: {key} = \S+: expected {re.escape(expected)}$")
    refused(stage, w, tmp_path, pattern, flags=("--config", str(path)), drop=(key,))


def test_a_config_file_with_a_syntax_error_is_one_line_naming_its_line(w, tmp_path):
    path = tmp_path / "my_config.py"
    path.write_text("max_iters = 1\nbatch_size = = 2\n")
    refused("reward", w, tmp_path, f"error: {path}:2: ", flags=("--config", str(path)))


@pytest.mark.parametrize("stage,flag,expected", [
    pytest.param("ppo", "--kl_coeff=0.1", "unknown config key 'kl_coeff' (did you mean kl_coef", id="ppo-misspelt-key"),
])
def test_a_malformed_flag_is_one_line_naming_it(w, tmp_path, stage, flag, expected):
    refused(stage, w, tmp_path, expected, flags=(flag,))  # the bad flag first, the good ones after it


# ------------------------------------------------------------------------------------------------
# a device this machine does not have, a dtype that does not exist

@pytest.mark.parametrize("stage,device", [
    pytest.param("sft", "cuda", marks=NO_CUDA, id="sft-cuda"),
    pytest.param("reward", "gpu", id="reward-gpu"),
])
def test_a_bad_device_is_one_line_naming_it(w, tmp_path, stage, device):
    refused(stage, w, tmp_path, f"--device={device!r}", device=device)


@pytest.mark.parametrize("stage,dtype,expected", [
    pytest.param("ppo", "float64", "--dtype: dtype = 'float64': expected one of", id="ppo-float64"),
])
def test_a_bad_dtype_is_one_line_naming_it(w, tmp_path, stage, dtype, expected):
    refused(stage, w, tmp_path, expected, dtype=dtype)


# ------------------------------------------------------------------------------------------------
# bad data files, in every file of every stage that reads one

GOOD_RECORD = {"sft": {"prompt": "say fig", "response": "fig fig"},
               "prefs": {"prompt": "say fig", "chosen": "fig", "rejected": "no"},
               "prompts": {"prompt": "say fig"}}
SLOTS = {  # the data files each stage reads -> the kind of record they hold
    "sft": {"train_data": "sft", "val_data": "sft"},
    "reward": {"train_data": "prefs", "val_data": "prefs", "rl_prompts": "prompts"},
    "dpo": {"train_data": "prefs", "val_data": "prefs", "eval_prompts": "prompts"},
    "ppo": {"prompts": "prompts", "eval_prompts": "prompts"},
}


def bad_data_file(kind, schema, d):
    """A bad data file of this kind, for records of this schema, under d -> (its path, what the error must say)."""
    good = json.dumps(GOOD_RECORD[schema]) + "\n"
    if kind == "directory":
        path = d / "data.jsonl"
        path.mkdir()
        return path, f"{path}: a directory, expected a JSONL file"
    if kind == "missing":
        path = d / "missing.jsonl"
        return path, f"{path}: no such file"
    if kind == "truncated_gz":
        path = d / "data.jsonl.gz"
        data = gzip.compress("".join(json.dumps({**GOOD_RECORD[schema], "n": i}) + "\n" for i in range(50)).encode())
        path.write_bytes(data[:len(data) // 2])
        return path, re.compile(rf"{re.escape(str(path))}: (truncated|cannot be read)")
    if kind == "not_utf8":
        path = d / "data.jsonl"
        path.write_bytes((good + good).encode() + b'{"prompt": "say \xff\xfe"}\n')
        return path, f"{path}:3: not UTF-8"
    if kind == "malformed_json_after_blank_lines":
        path = d / "data.jsonl"
        path.write_text(good + "\n\n" + good[:len(good) // 2] + "\n")
        return path, f"{path}:4: malformed JSON"
    if kind == "unknown_char":
        path = d / "data.jsonl"
        path.write_text(good + good + json.dumps({**GOOD_RECORD[schema], "prompt": "say Zebra"}) + "\n")
        return path, re.compile(rf"{re.escape(str(path))}:3: .*'Z'")
    raise KeyError(kind)


DATA_CASES = [  # every file of every stage, every kind at least once
    ("sft", "train_data", "unknown_char"),
    ("sft", "val_data", "not_utf8"),
    ("reward", "train_data", "malformed_json_after_blank_lines"),
    ("reward", "val_data", "directory"),
    ("reward", "rl_prompts", "truncated_gz"),
    ("dpo", "train_data", "truncated_gz"),
    ("dpo", "val_data", "unknown_char"),
    ("dpo", "eval_prompts", "missing"),
    ("ppo", "prompts", "unknown_char"),
    ("ppo", "eval_prompts", "not_utf8"),
]


@pytest.mark.parametrize("stage,key,kind", [pytest.param(*c, id="-".join(c)) for c in DATA_CASES])
def test_a_bad_data_file_is_one_line_naming_the_file_and_line(w, tmp_path, stage, key, kind):
    (tmp_path / "data").mkdir()
    path, expected = bad_data_file(kind, SLOTS[stage][key], tmp_path / "data")
    toy = {"toy_eval": True} if key == "eval_prompts" else {}  # dpo and ppo read eval_prompts only then
    refused(stage, w, tmp_path, expected, **{key: path}, **toy)


@pytest.mark.parametrize("stage", ["reward", "dpo", "ppo"])
def test_toy_eval_on_prompts_that_are_not_the_toy_worlds_is_refused_before_out_dir(w, tmp_path, stage):
    # the shared data files are readable and tokenisable, but their prompts are not the toy world's: its gold
    # judge (data/toy/judge.py) cannot score them; the error must name the file that holds them
    refused(stage, w, tmp_path, re.compile(r"(prefs|prompts)\.jsonl"), toy_eval=True)


# ------------------------------------------------------------------------------------------------
# bad checkpoints, at every loader; checkpoints of the wrong kind

CKPT_KINDS = {"truncated": "is not a readable checkpoint", "empty": "is not a readable checkpoint",
              "nan": "holds NaN or infinite values"}
def ckpt_case(stage, key, expects, kind):
    return pytest.param(stage, key, expects, kind, id=f"{stage}-{key}-{kind}")


CKPT_CASES = [  # (stage, key, the checkpoint it expects: sft or rm, what is wrong with it): every loader, every kind
    ckpt_case("sft", "init_from", "sft", "empty"),
    ckpt_case("reward", "init_from", "sft", "nan"),
    ckpt_case("reward", "norm_policy", "sft", "truncated"),
    ckpt_case("dpo", "init_from", "sft", "truncated"),
    ckpt_case("ppo", "sft_dir", "sft", "nan"),
    ckpt_case("ppo", "reward_dir", "rm", "nan"),
    ckpt_case("evaluate", "reward_dir", "rm", "empty"),
    ckpt_case("evaluate", "checkpoints", "sft", "truncated"),
]


@pytest.mark.parametrize("stage,key,expects,kind", CKPT_CASES)
def test_a_bad_checkpoint_is_one_line_naming_the_key(w, tmp_path, stage, key, expects, kind):
    path = w / "bad" / f"{expects}_{kind}"
    value = f"x:{path}" if key == "checkpoints" else path
    refused(stage, w, tmp_path, f"--{key}={path}", CKPT_KINDS[kind], **{key: value})


@pytest.mark.parametrize("stage,kind", [pytest.param("sft", "truncated", id="sft-truncated"),
                                        pytest.param("reward", "nan", id="reward-nan"),
                                        pytest.param("dpo", "empty", id="dpo-empty")])
def test_resuming_a_bad_checkpoint_is_refused_and_leaves_it_as_it_was(w, tmp_path, stage, kind):
    out = tmp_path / "run"
    # an unreadable ckpt.pt is unreadable whoever wrote it; a NaN one must be the stage's own to pass the stage check
    shutil.copytree(w / "bad" / f"{'rm' if stage == 'reward' else 'sft'}_{kind}", out)
    refused(stage, w, tmp_path, f"--out_dir={out}", CKPT_KINDS[kind], out=out, resume=True)


@pytest.mark.parametrize("stage,key,given,expected", [
    pytest.param("sft", "init_from", "rm", "a checkpoint of reward.py; expected one of sft.py, dpo.py, kto.py, ppo.py",
                 id="sft-init_from=REWARD"),
    pytest.param("dpo", "init_from", "rm", "a checkpoint of reward.py; expected one of sft.py", id="dpo-init_from=REWARD"),
    pytest.param("ppo", "sft_dir", "rm", "a checkpoint of reward.py; expected one of sft.py", id="ppo-sft_dir=REWARD"),
    pytest.param("ppo", "reward_dir", "sft", "a checkpoint of sft.py; expected one of reward.py", id="ppo-reward_dir=SFT"),
    pytest.param("ppo", "reward_dir", "rm_unnormalised", "not normalised", id="ppo-reward_dir=UNNORMALISED"),
    pytest.param("ppo", "reward_dir", "rm_std0", "std 0.0", id="ppo-reward_dir=STD_0"),
    pytest.param("ppo", "reward_dir", "rm_stdnan", "std nan", id="ppo-reward_dir=STD_NAN"),
])
def test_a_checkpoint_of_the_wrong_kind_is_one_line_naming_the_key(w, tmp_path, stage, key, given, expected):
    # another stage's checkpoint, a reward model never normalised, or normalised with std 0 or NaN
    refused(stage, w, tmp_path, f"--{key}={w / given}", expected, **{key: w / given})


def test_resuming_into_another_stages_directory_is_refused_and_leaves_it_as_it_was(w, tmp_path):
    out = tmp_path / "reward_run"  # sft.py --resume=True --out_dir=REWARD_DIR
    shutil.copytree(w / "rm", out)
    refused("sft", w, tmp_path, f"--out_dir={out}", "a checkpoint of reward.py; expected one of sft.py", out=out, resume=True)


# ------------------------------------------------------------------------------------------------
# out_dir: a run is never replaced unless asked, and never by a run whose settings or inputs are bad

@pytest.mark.parametrize("stage", STAGES)
def test_an_existing_run_is_refused_without_overwrite(w, tmp_path, stage):
    out = old_run(tmp_path / "run", w)
    refused(stage, w, tmp_path, f"out_dir {str(out)!r} already holds a run", out=out)


@pytest.mark.parametrize("stage,overrides,expected", [
    pytest.param("sft", dict(batch_size=0), "--batch_size: batch_size = 0", id="sft-batch_size=0"),
    pytest.param("ppo", dict(device="gpu"), "--device='gpu'", id="ppo-device=gpu"),
    pytest.param("dpo", dict(loss_type="ipo", beta=0), "--beta: beta = 0.0", id="dpo-ipo-beta=0"),
])
def test_overwrite_with_a_bad_setting_keeps_the_previous_run(w, tmp_path, stage, overrides, expected):
    out = old_run(tmp_path / "run", w)
    refused(stage, w, tmp_path, expected, out=out, overwrite=True, **overrides)
    assert not (tmp_path / "run.replaced").exists()


def test_overwrite_with_a_bad_rl_prompts_file_keeps_the_previous_run(w, tmp_path):
    out = old_run(tmp_path / "run", w)
    (tmp_path / "data").mkdir()
    path, expected = bad_data_file("malformed_json_after_blank_lines", "prompts", tmp_path / "data")
    refused("reward", w, tmp_path, expected, out=out, overwrite=True, rl_prompts=path)
    assert not (tmp_path / "run.replaced").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_reward_out_dir_that_is_its_own_init_from_is_refused(w, tmp_path, overwrite):
    sft = tmp_path / "sft"
    shutil.copytree(w / "sft", sft)
    refused("reward", w, tmp_path, f"holds this run's input --init_from={sft}", out=sft, init_from=sft, overwrite=overwrite)


def test_evaluate_refuses_an_out_dir_holding_results_without_overwrite(w, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "table.md").write_text("| the previous table |\n")
    (out / "results.json").write_text('{"models": "the previous results"}\n')
    (out / "notes.txt").write_text("the user's own file beside them\n")
    refused("evaluate", w, tmp_path, f"out_dir {str(out)!r} already holds results (table.md)", out=out)


def test_overwrite_with_good_settings_replaces_the_previous_run(w, tmp_path):
    from checkpoint import load_checkpoint
    out = old_run(tmp_path / "run", w)
    old = (out / "ckpt.pt").read_bytes()
    before = snapshot(w)
    result = run("sft", w, out, overwrite=True)
    assert result.returncode == 0, f"{command_line(result)}\n{result.stdout}\n{result.stderr}"
    assert_unchanged(before, snapshot(w), command_line(result))
    assert (out / "ckpt.pt").read_bytes() != old and load_checkpoint(str(out))["step"] == 1
    assert "the previous run" not in (out / "metrics.jsonl").read_text()
    assert not (tmp_path / "run.replaced").exists() and sorted(os.listdir(tmp_path)) == ["run"]
    assert_no_temp_files(out)
