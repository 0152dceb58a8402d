"""Bad input on the command line: one clear line on stderr, a non-zero exit, nothing written."""

import json
import os
import subprocess
import sys

import pytest
import torch

from model import GPT, GPTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = result.stderr.strip().splitlines()
    return result.returncode, lines


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    GPT(GPTConfig(block_size=16, vocab_size=50257, n_layer=1, n_head=1, n_embd=8)).save_pretrained(str(d / "tiny_gpt2"))
    (d / "no_weights").mkdir()
    (d / "no_weights" / "config.json").write_text((d / "tiny_gpt2" / "config.json").read_text())
    (d / "bad_shapes").mkdir()
    config = json.loads((d / "tiny_gpt2" / "config.json").read_text())
    config["n_embd"] = 16
    (d / "bad_shapes" / "config.json").write_text(json.dumps(config))
    (d / "bad_shapes" / "model.safetensors").write_bytes((d / "tiny_gpt2" / "model.safetensors").read_bytes())
    return d


@pytest.mark.parametrize("args,expected", [
    (lambda d: [f"--init_from={d / 'no_weights'}"], "no model.safetensors or pytorch_model.bin"),
    (lambda d: [f"--init_from={d / 'bad_shapes'}"], "checkpoint key 'wte.weight' has shape (50257, 8), the model expects (50257, 16)"),
    (lambda d: [f"--init_from={d / 'tiny_gpt2'}", "--prompt=" + "word " * 20], "longer than block_size 16"),
    (lambda d: ["--init_from=gpt3"], "unknown model 'gpt3'"),
    (lambda d: ["--max_new_tokns=5"], "unknown config key 'max_new_tokns' (did you mean max_new_tokens?)"),
])
def test_sample_py_bad_input(model_dirs, args, expected):
    code, lines = run("sample.py", *args(model_dirs), "--device=cpu", "--max_new_tokens=2")
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_sample_py_works_on_a_local_gpt2_directory(model_dirs):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "sample.py"), f"--init_from={model_dirs / 'tiny_gpt2'}",
                             "--prompt=Hello world", "--num_samples=2", "--max_new_tokens=3", "--device=cpu"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.count("Hello world") == 2, result.stderr


def test_unknown_tokenizer_name(tmp_path):
    code, lines = run("sft.py", "--init_from=scratch", "--tokenizer=bpe5", f"--out_dir={tmp_path / 'x'}", "--device=cpu")
    assert code == 2 and len(lines) == 1 and "unknown tokenizer 'bpe5'" in lines[0]
    assert not (tmp_path / "x").exists()
