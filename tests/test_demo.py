"""The README's main command, in its wiring mode (QUICK=1: every stage for a few steps): it runs end to
end offline and writes the table, results.json and the plots; it never writes into an existing run."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_KEYS = ["score", "greedy_score", "harmful_refusal", "over_refusal", "topic_correct", "math_correct",
               "unanswerable_idk", "well_formed", "rm_score", "kl", "length", "win_rate", "perplexity",
               "distinct_1", "distinct_2", "jailbreak_refusal", "jailbreak_compliance", "jailbreak_over_refusal"]


def run_script(*args, **env):
    return subprocess.run(["bash", *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "SKIP_INSTALL": "1", **env})


def test_quick_demo_writes_table_results_and_plots(tmp_path):
    out = tmp_path / "demo"
    result = run_script("scripts/demo.sh", str(out), QUICK="1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())["models"]
    assert set(results) == {"sft", "ppo", "ppo_beta0", "grpo", "dpo"}
    for name, row in results.items():
        missing = [k for k in RESULT_KEYS if k not in row]
        assert not missing, (name, missing)
    assert results["sft"]["kl"] == 0.0 and results["sft"]["win_rate"] == 0.5  # the reference against itself
    # the table starts with what SFT imitates: the demonstrations, every one a sentence of the world
    demonstrations = json.loads((out / "results.json").read_text())["demonstrations"]
    assert demonstrations["well_formed"] == 1.0 and demonstrations["n"] == 200
    assert (out / "table.md").read_text().splitlines()[2].startswith("| demonstrations | ")
    for name in ("table.md", "metrics.png", "frontier.png", "overoptimization.png"):
        assert (out / name).stat().st_size > 0, name
    # every stage's progress lines reached the console
    for stage in ("SFT", "reward model", "PPO", "GRPO", "DPO", "evaluation"):
        assert f"] {stage}" in result.stdout, stage

    again = run_script("scripts/demo.sh", str(out), QUICK="1")
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("script", ["scripts/experiments.sh", "scripts/grpo_experiments.sh", "scripts/direct_experiments.sh",
                                    "scripts/direct_sweep.sh", "scripts/grpo_select.sh",
                                    "scripts/grpo_verifier_select.sh", "scripts/grpo_verifier_seeds.sh"])
def test_experiments_scripts_need_a_finished_demo(tmp_path, script):
    result = run_script(script, str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert "must be a finished run of scripts/demo.sh" in result.stderr


def write_evals(run_dir, rows):
    """A grpo.py run's metrics.jsonl with only its periodic gold evaluations: rows = {iteration: {kind: rate}}."""
    run_dir.mkdir(parents=True)
    lines = [{"step": it, "eval/gold_score": 0.0, **{f"eval/{k}": v for k, v in rates.items()}} for it, rates in rows.items()]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_verifier_select_rule_keeps_the_other_kinds_within_0_05(tmp_path):
    """scripts/grpo_verifier_select.py: a (candidate, iteration) whose other kinds drift by 0.05 or more on average
    is never chosen, however high its math_correct; among the rest the highest math_correct, ties to fewer
    iterations. Hand-made: on both seeds a@30 drifts topic_correct by exactly +0.06, a@60 by +0.04 (kept); b@30 and
    b@60 tie on math_correct 0.90 within the limit, below a@60's 0.93."""
    base = {"math_correct": 0.70, "harmful_refusal": 0.60, "over_refusal": 0.05, "topic_correct": 0.66, "unanswerable_idk": 0.75}
    for seed in ("seed_1", "seed_2"):
        write_evals(tmp_path / seed / "a", {0: base, 30: {**base, "math_correct": 0.99, "topic_correct": 0.72},
                                            60: {**base, "math_correct": 0.93, "topic_correct": 0.70}})
        write_evals(tmp_path / seed / "b", {0: base, 30: {**base, "math_correct": 0.90}, 60: {**base, "math_correct": 0.90}})
    result = subprocess.run([sys.executable, "scripts/grpo_verifier_select.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "choice.txt").read_text() == "a 60\n"
    assert "Chosen: a@60" in result.stdout and "misses the issue's 0.95" in result.stdout
    for seed in ("seed_1", "seed_2"):  # without a@60, the tie between b@30 and b@60 goes to fewer iterations
        (tmp_path / seed / "a" / "metrics.jsonl").unlink()
    subprocess.run([sys.executable, "scripts/grpo_verifier_select.py", str(tmp_path)], cwd=ROOT, check=True, capture_output=True)
    assert (tmp_path / "choice.txt").read_text() == "b 30\n"


def test_gpu_check_runs_on_cpu_at_tiny_sizes(tmp_path):
    """scripts/gpu_check.sh --device=cpu: the same checks as on a GPU (float16 skipped), so the script cannot rot."""
    result = run_script("scripts/gpu_check.sh", "--device=cpu", str(tmp_path / "check"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for row in ("| toy_pipeline | pass |", "| torchrun_1_process | pass |", "| float16_scaler | skipped",
                "| throughput | pass |", "| SFT step | 4 x 64 |", "| DPO step |", "| PPO rollout (new tokens) |"):
        assert row in result.stdout, row
    assert (tmp_path / "check" / "toy" / "table.md").exists()


def test_gpu_check_without_a_gpu_says_so(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_script("scripts/gpu_check.sh", str(tmp_path / "check"))
    assert result.returncode == 2 and "PyTorch sees no CUDA GPU here; run with --device=cpu" in result.stderr


STUB_PYTHON = r"""#!/usr/bin/env bash
# stands in for python in scripts/seeds.sh: logs its arguments, makes --out_dir with a ckpt.pt, fails on $FAIL_ON
echo "$*" >> "$STUB_LOG"
for a in "$@"; do case $a in --out_dir=*) d=${a#--out_dir=};; esac; done
[ "${1:-}" = -m ] && d=$4  # python -m data.toy.prepare --out_dir DIR
mkdir -p "$d"; touch "$d/ckpt.pt"
case $d in *"${FAIL_ON:-no such dir}") exit 1;; esac
"""


def test_seeds_driver_is_resumable(tmp_path):
    """scripts/seeds.sh's bookkeeping with a stand-in python: a stage that finished is never run again, one that was
    stopped with a checkpoint continues with --resume=True, one stopped before any is restarted with --overwrite=True."""
    stub, log, out = tmp_path / "python", tmp_path / "calls.log", tmp_path / "seeds"
    stub.write_text(STUB_PYTHON)
    stub.chmod(0o755)
    env = dict(PYTHON=str(stub), STUB_LOG=str(log), SEEDS="1 2")
    first = run_script("scripts/seeds.sh", str(out), FAIL_ON="seed_2/kto", **env)
    assert first.returncode == 1
    calls = log.read_text().splitlines()
    assert sum("--seed=1" in c for c in calls) == 11 and calls[-1].startswith("kto.py") and "seed_2/kto" in calls[-1]
    (out / "seed_2" / "simpo").mkdir()  # as if stopped before its first checkpoint
    log.unlink()
    second = run_script("scripts/seeds.sh", str(out), **env)
    assert second.returncode == 0, second.stdout + second.stderr
    calls = log.read_text().splitlines()
    assert not any("seed_1/" in c and "--aggregate" not in c for c in calls)  # seed 1 finished: nothing of it again
    assert not any("prepare" in c for c in calls)
    by_dir = {c.split("--out_dir=")[1].split()[0]: c for c in calls}
    assert "--resume=True" in by_dir[f"{out}/seed_2/kto"] and "--overwrite=True" in by_dir[f"{out}/seed_2/simpo"]
    assert "--resume=True" not in by_dir[f"{out}/seed_2/orpo"] and "--overwrite=True" not in by_dir[f"{out}/seed_2/orpo"]
    assert calls[-1].startswith("evaluate.py --aggregate=seed_1:") and f"seed_2:{out}/seed_2/eval" in calls[-1]
    log.unlink()
    assert run_script("scripts/seeds.sh", str(out), **env).returncode == 0
    assert [c.split()[1].split("=")[0] for c in log.read_text().splitlines()] == ["--aggregate"]  # only the cheap step


def test_seeds_driver_needs_two_seeds(tmp_path):
    result = run_script("scripts/seeds.sh", str(tmp_path / "s"), SEEDS="1")
    assert result.returncode == 2 and "SEEDS needs two or more seeds" in result.stderr


@pytest.mark.parametrize("script", ["scripts/grpo_select.sh", "scripts/grpo_verifier_select.sh", "scripts/grpo_verifier_seeds.sh"])
def test_seed_drivers_on_a_demo_need_two_seeds_and_touch_nothing(tmp_path, script):
    out = tmp_path / "out"
    result = run_script(script, str(tmp_path / "demo"), str(out), SEEDS="1")
    assert result.returncode == 2 and "SEEDS needs two or more seeds" in result.stderr
    assert not out.exists()
