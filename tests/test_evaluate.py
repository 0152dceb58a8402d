"""evaluate.py beyond the toy world: the reward-model table (no gold judge) on tiny checkpoints -- its columns,
the reference row against itself, a judge reward model (here the reward model itself, so its columns must
equal the reward model's), the base row, samples.md -- the choice between the gold judge and reward models
only, and win rate against hand-worked numbers."""

import json
import shutil

import pytest
import torch

from evaluate import REWARD_COLUMNS, win_rate

from conftest import StandInConfig, run_stage, tiny_sft_checkpoint, write_records

WORDS = ["apple", "pear", "plum", "fig", "kiwi", "lime"]


@pytest.fixture(scope="module")
def hh_like(tmp_path_factory):
    """Prompts that are not the toy world's, a tiny SFT stand-in, its reward model, a policy moved away from it,
    and a 'base' model (another random one)."""
    from checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
    d = tmp_path_factory.mktemp("hh_like")
    write_records(d / "prompts.jsonl", [{"prompt": f"name a fruit like {w}"} for w in WORDS])
    write_records(d / "demos.jsonl", [{"prompt": f"name a fruit like {w}", "response": f"{w} is one"} for w in WORDS])
    tiny_sft_checkpoint(d, [f"name a fruit like {w} is one" for w in WORDS], block_size=64, scalar_head_dir="rm")
    ckpt = load_checkpoint(str(d / "sft"))
    for name, stage, seed in (("policy", "dpo", 1), ("base", "sft", 2)):  # the SFT weights, moved at random
        torch.manual_seed(seed)
        model = model_from_checkpoint(ckpt)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5 * torch.randn_like(p))
        (d / name).mkdir()
        save_checkpoint(str(d / name), model, StandInConfig(), step=0, tokenizer=ckpt["tokenizer"], stage=stage)
    shutil.copytree(d / "rm", d / "judge")
    return d


def run_evaluate(d, out, **overrides):
    args = dict(checkpoints=f"sft:{d / 'sft'},policy:{d / 'policy'}", reference=d / "sft", reward_dir=d / "rm",
                eval_prompts=d / "prompts.jsonl", demos=d / "demos.jsonl", samples_per_prompt=2, max_new_tokens=8,
                out_dir=out, samples_md=3, device="cpu", dtype="float32")
    return run_stage("evaluate.py", {**args, **overrides})


def test_the_reward_model_table_with_a_judge_a_base_row_and_samples(hh_like, tmp_path):
    out = tmp_path / "eval"
    result = run_evaluate(hh_like, out, judge_reward_dir=hh_like / "judge", base=hh_like / "base")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no gold judge: reward models only" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["gold_judge"] is False and results["demonstrations"] is None
    rows = results["models"]
    assert list(rows) == ["base", "sft", "policy"]
    for name, row in rows.items():
        assert set(REWARD_COLUMNS) <= set(row) and "score" not in row, name
        # the judge is the reward model itself: the same responses must get the same scores and win rates
        assert row["judge_rm_score"] == pytest.approx(row["rm_score"]) and row["judge_win_rate"] == row["win_rate"], name
    assert rows["sft"]["win_rate"] == 0.5 and rows["sft"]["kl"] == 0.0  # the reference against itself
    assert rows["policy"]["kl"] != 0.0 and rows["base"]["kl"] != 0.0
    table = (out / "table.md").read_text()
    assert table.splitlines()[0] == "| model | " + " | ".join(REWARD_COLUMNS) + " |"
    samples = (out / "samples.md").read_text()
    assert samples.count("## Prompt ") == 3 and samples.count("**policy** (rm ") == 3 and ", judge rm " in samples
    assert "name a fruit like apple" in samples and (out / "frontier.png").stat().st_size > 0
    assert not (out / "metrics.png").exists()  # the bar chart is of the gold judge's rates


def test_without_a_judge_the_judge_columns_are_left_out(hh_like, tmp_path):
    result = run_evaluate(hh_like, tmp_path / "eval", samples_md=0)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())["models"]
    assert "judge_rm_score" not in rows["policy"] and not (tmp_path / "eval" / "samples.md").exists()


def test_the_gold_judge_asked_for_on_other_prompts_is_one_line_naming_the_prompt(hh_like, tmp_path):
    result = run_evaluate(hh_like, tmp_path / "eval", judge="toy")
    assert result.returncode == 2
    assert "prompts.jsonl:1: " in result.stderr and "the gold judge (toy_eval) knows only the toy world's prompts" in result.stderr
    assert not (tmp_path / "eval").exists()


def test_jailbreak_prompts_without_a_gold_judge_are_refused(hh_like, tmp_path):
    result = run_evaluate(hh_like, tmp_path / "eval", jailbreak_prompts=hh_like / "prompts.jsonl")
    assert result.returncode == 2 and "--jailbreak_prompts: the jailbreak columns are the toy world's" in result.stderr
    assert not (tmp_path / "eval").exists()


def test_win_rate_by_hand():
    # 2 > 1 wins, 1 = 1 ties, 0 < 3 loses: (1 + 0.5 + 0) / 3
    assert win_rate([2.0, 1.0, 0.0], [1.0, 1.0, 3.0]) == pytest.approx(0.5)
    assert win_rate([1.0], [0.0]) == 1.0


def test_best_of_n_keeps_each_groups_highest_score():
    from evaluate import best_of_n
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.2], [1.0, 1.0, 0.0, 2.0]])
    assert best_of_n(scores, 1).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]  # every sample is its own group
    assert best_of_n(scores, 2).tolist() == [[1, 2], [0, 3]]  # groups (0, 1), (2, 3); a tie keeps the first
    assert best_of_n(scores, 4).tolist() == [[1], [3]]


def test_bon_kl_against_the_exact_kl_of_best_of_n_over_many_equally_likely_responses():
    """K equally likely responses with distinct rewards: best-of-n picks the i-th ranked with probability
    (i / K)^n - ((i - 1) / K)^n, so KL = sum_i p_i log(p_i K), which tends to log n - (n - 1) / n as K grows."""
    import math
    from evaluate import bon_kl
    K = 100_000
    for n in (1, 2, 4, 64):
        i = torch.arange(1, K + 1, dtype=torch.float64)
        p = (i / K) ** n - ((i - 1) / K) ** n
        exact = float((p[p > 0] * torch.log(p[p > 0] * K)).sum())
        assert bon_kl(n) == pytest.approx(exact, abs=1e-3), n
    assert bon_kl(1) == 0.0 and bon_kl(2) == pytest.approx(math.log(2) - 0.5)


def test_bon_rows_on_the_frontier(hh_like, tmp_path):
    result = run_evaluate(hh_like, tmp_path / "eval", bon="1,2,4", samples_md=0)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())["models"]
    assert [rows[f"bon_{n}"]["kl"] for n in (1, 2, 4)] == pytest.approx([0.0, 0.19314718, 0.63629436])
    # the same 4 samples per prompt, in disjoint groups: the mean of each group's best never falls as N grows
    assert rows["bon_1"]["rm_score"] <= rows["bon_2"]["rm_score"] <= rows["bon_4"]["rm_score"]
    assert "| bon_4 |" in (tmp_path / "eval" / "table.md").read_text()
    # a checkpoint named like a best-of-N row would be replaced by it: refused, one line, nothing written
    clash = run_evaluate(hh_like, tmp_path / "clash", bon="1,2", checkpoints=f"sft:{hh_like / 'sft'},bon_2:{hh_like / 'policy'}")
    assert clash.returncode != 0 and "names bon_N are --bon's rows" in clash.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "clash").exists()


# -----------------------------------------------------------------------------
# several seeds (evaluate.py --aggregate), against numbers worked out by hand

def test_mean_std_and_the_95_percent_interval_by_hand():
    import math
    from evaluate import mean_std, t_interval
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, math.sqrt(7 / 3)))  # squares 16/9 + 1/9 + 25/9 = 42/9, / 2
    # diffs 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t_{0.975, 2} = 4.303 (any t table): 0.2 -+ 4.303 * 0.1 / sqrt(3)
    mean, low, high = t_interval([0.1, 0.2, 0.3])
    assert (mean, low, high) == pytest.approx((0.2, 0.2 - 0.248434, 0.2 + 0.248434), abs=1e-6)
    # two values: sd = 1 / sqrt(2), so the half width is t_{0.975, 1} * sd / sqrt(2) = 12.706 / 2
    assert t_interval([1.0, 2.0]) == pytest.approx((1.5, 1.5 - 6.353, 1.5 + 6.353))
    assert math.isnan(mean_std([3.0])[1]) and math.isnan(t_interval([3.0])[1])


def test_aggregate_seeds_pairs_each_model_with_its_own_seeds_sft():
    from evaluate import aggregate_seeds, seeds_tables
    results = {"a": {"sft": {"score": 0.4, "n": 960}, "ppo": {"score": 0.8, "kl": 0.3, "n": 960}},
               "b": {"sft": {"score": 0.5, "n": 960}, "ppo": {"score": 0.8, "kl": 0.5, "n": 960}},
               "c": {"sft": {"score": 0.3, "n": 960}, "ppo": {"score": 0.8, "kl": 0.4, "n": 960}, "only_c": {"score": 1.0}}}
    agg = aggregate_seeds(results)
    assert set(agg["models"]) == {"sft", "ppo"}  # a model some seed lacks is left out
    assert agg["models"]["ppo"]["kl"]["mean"] == pytest.approx(0.4) and agg["models"]["ppo"]["kl"]["std"] == pytest.approx(0.1)
    assert agg["models"]["ppo"]["score"]["values"] == [0.8, 0.8, 0.8] and "n" not in agg["models"]["ppo"]
    # paired: ppo - sft per seed is 0.4, 0.3, 0.5 -> mean 0.4, sd 0.1, the same interval as t_interval's hand check
    d = agg["vs_baseline"]["ppo"]["score"]
    assert (d["mean"], d["low"], d["high"]) == pytest.approx((0.4, 0.4 - 0.248434, 0.4 + 0.248434), abs=1e-6)
    assert "kl" not in agg["vs_baseline"]["ppo"] and "sft" not in agg["vs_baseline"]  # sft has no kl column here
    # every two models, paired by seed: ppo - sft is the same interval as vs_baseline's
    assert agg["pairwise"]["sft - ppo"]["score"]["mean"] == pytest.approx(-0.4) and list(agg["pairwise"]) == ["sft - ppo"]
    table = seeds_tables(agg, ["score", "kl"], ["score"], 3)
    assert "| ppo | +0.80 ± 0.00 | 0.40 ± 0.10 |" in table and "| ppo | +0.40 [+0.15, +0.65] |" in table
