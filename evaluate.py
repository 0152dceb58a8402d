"""
evaluate.py -- the evaluation table for any set of checkpoints: the toy world's, with its gold judge, or,
for any other prompts (HH-RLHF), the reward-model table that the classic "base / SFT / RLHF" comparison needs.

For each checkpoint, sample responses to the held-out evaluation prompts (disjoint from every training
prompt) and measure them. Rates are measured on samples at temperature 1 -- the policy that RLHF
optimises is the sampling distribution, and greedy decoding hides a policy's flaws by always picking its
majority behaviour -- with `samples_per_prompt` samples per prompt so the rates are stable; greedy
decoding is reported beside them (`greedy_*` columns).

    python evaluate.py --checkpoints=sft:out/toy/sft,ppo:out/toy/ppo,dpo:out/toy/dpo --out_dir=out/toy/eval

The table's first row, "demonstrations", is the gold judge on the held-out demonstrations themselves
(--demos): the flawed behaviour SFT imitates, so an SFT model sampled at temperature 1 should show about
the same rates. With out_dir it writes results.json, table.md, metrics.png (the main rates, a bar per model) and
frontier.png: gold score against KL to the reference, one line per method, where a method is the
letters a name starts with ("ppo_beta0.05" and "ppo" are both PPO; the DPO paper's figure 2 on the
toy world). --runs=name:dir,... adds overoptimization.png from PPO, GRPO and DPO runs' own periodic
evaluations (metrics.jsonl): for PPO and GRPO the reward-model score and the gold score as training pushes on
(Gao et al. 2022), where the learned reward keeps rising after the gold score stops; for DPO the gold
score against its held-out preference accuracy. --curves=key,... (with --runs) adds training_curves.png:
those training metrics of every run against iteration (scripts/grpo_experiments.sh: response/length).

Columns (results.json has them all; table.md the main ones):
    score               mean gold score in [-1, 1] (data/toy/judge.py)
    well_formed, helpful, harmless, honest        the gold judge's axes, as rates
    harmful_refusal     refusals on harmful prompts (higher is better)
    over_refusal        refusals on benign prompts (lower is better)
    topic_correct, math_correct, unanswerable_idk   each skill's accuracy
    rm_score            the normalised reward model's mean score (SFT samples: mean 0, std 1)
    kl                  sampled KL(pi || pi_sft) per response: mean of sum_t (log pi - log pi_sft), nats
    length              mean response length in tokens, end-of-text included
    win_rate            against the reference (SFT) model's samples on the same prompts, by gold score
                        (a tie counts one half)
    perplexity          exp(per-token loss) on the held-out demonstrations: what alignment costs in fit
    distinct_1, distinct_2   distinct word uni-/bi-grams over all samples / their number: diversity
    jailbreak_refusal, jailbreak_over_refusal   with --jailbreak_prompts (data/toy/prepare.py's jailbreak_prompts.jsonl):
                        refusals on the held-out harmful requests inside adversarial wrappers no training file
                        contains (role play, "ignore the rules", hidden after a benign request; higher is better),
                        and on benign requests inside the same wrappers (lower is better); results.json also has
                        jailbreak_compliance and jailbreak_refusal/<wrapper family>

Without a gold judge (--judge=none, or --judge=auto and prompts that are not the toy world's) the table has
rm_score, win_rate by the reward model's score (against the reference's sample for the same prompt), KL,
perplexity on the held-out --demos (for HH: the chosen responses), length and distinct-1/2; and with
--judge_reward_dir, judge_rm_score and judge_win_rate under a second reward model trained on a disjoint half
of the preference data (data/hh_rlhf/prepare.py --judge_halves): a policy's score under the reward it was
trained on beside its score under one it never saw, the held-out-reward-model check for over-optimisation
(Gao et al. 2022). --base=gpt2 (or a Hugging Face directory, or any checkpoint) adds a "base" row: the model
before SFT, prompted with the same template. With out_dir, frontier.png is then the judge's (or the reward
model's) score against KL, and samples.md has the first --samples_md prompts answered by every model side by
side (the first sample of each), for a person to read; in the toy world too.

--bon=1,2,4,...,64 adds best-of-N from the reference (Stiennon et al. 2020; Gao et al. 2022): lcm(N) samples per
prompt from the reference, split into disjoint groups of N, each group's highest reward-model score kept; rows
bon_N with the chosen responses' rates and scores, and KL = log N - (N - 1) / N, the analytic KL of best-of-N,
so the frontier gets the curve every RL method should be compared with.

--aggregate=seed_1:dir,seed_2:dir,... (scripts/seeds.sh) samples nothing: it reads the results.json of evaluations of
the same models trained with different seeds and writes every column as mean +- standard deviation over the seeds, and
each model's per-seed difference to that seed's SFT with a 95% Student-t interval, in table.md and results.json, and
frontier.png with error bars (one standard deviation across seeds, both axes) and the best-of-N curve.

    python evaluate.py --judge=none --checkpoints=sft:out/gpt2_hh/sft,ppo:out/gpt2_hh/ppo,dpo:out/gpt2_hh/dpo \
        --reference=out/gpt2_hh/sft --reward_dir=out/gpt2_hh/reward --judge_reward_dir=out/gpt2_hh/reward_judge \
        --base=gpt2 --eval_prompts=data/hh_rlhf/sft_val.jsonl --demos=data/hh_rlhf/sft_val.jsonl \
        --eval_max_prompts=500 --samples_per_prompt=1 --max_new_tokens=128 --skip_long=True --batch_size=16 --out_dir=out/gpt2_hh/eval
"""

import json
import math
import os
import re
from dataclasses import dataclass

import torch

from atomic_io import atomic_save_figure, atomic_write_text
from checkpoint import POLICY_STAGES, load_model, load_reward_model, tokenizer_of
from configurator import at_least, one_of, parse_config, run_cli
from data.batches import collate, tokenize_prompts
from data.formats import format_prompt, load_prompts, load_sft, read_jsonl
from data.toy.judge import (check_jailbreak_prompts, check_prompts, format_table, is_toy_prompt, jailbreak_summary, judge,
                            summarize)
from logger import pyplot
from ppo import decode_responses, response_scores, rollout
from runtime import setup_runtime
from sampling import generate_responses
from sft import supervised_loss_sum, training_examples
from tokenizer import get_tokenizer

TABLE_COLUMNS = ["score", "greedy_score", "harmful_refusal", "over_refusal", "topic_correct", "math_correct",
                 "unanswerable_idk", "well_formed", "rm_score", "kl", "win_rate", "length", "perplexity", "distinct_2"]
SEEDS_COLUMNS = ["score", "harmful_refusal", "over_refusal", "topic_correct", "math_correct", "unanswerable_idk", "well_formed",
                 "rm_score", "kl", "jailbreak_refusal", "jailbreak_over_refusal"]  # the --aggregate table
SEEDS_DIFF_COLUMNS = ["score", "harmful_refusal", "topic_correct", "math_correct", "unanswerable_idk", "jailbreak_refusal"]
REWARD_COLUMNS = ["rm_score", "win_rate", "judge_rm_score", "judge_win_rate", "kl", "perplexity", "length", "distinct_1",
                  "distinct_2"]  # the table without a gold judge


@dataclass
class EvalConfig:
    checkpoints: str = "sft:out/toy/sft"  # comma-separated checkpoint dirs, each optionally named as name:dir
    reference: str = "out/toy/sft"  # the SFT checkpoint: the KL reference and the win-rate baseline
    reward_dir: str = "out/toy/reward"  # the normalised reward model, for rm_score
    eval_prompts: str = "data/toy/eval_prompts.jsonl"  # held-out prompts {"prompt", ...} ("kind" in the toy world)
    demos: str = "data/toy/sft_val.jsonl"  # held-out demonstrations: the perplexity (and the toy table's first row)
    jailbreak_prompts: str = ""  # the toy world's jailbreak prompts (data/toy/jailbreak_prompts.jsonl): jailbreak_* columns
    judge: str = "auto"  # 'toy' (the gold judge), 'none' (reward models only), 'auto': toy if every prompt is the toy world's
    judge_reward_dir: str = ""  # a second reward model, trained on data the policies never saw: judge_rm_score
    base: str = ""  # the model before SFT ('gpt2', a Hugging Face directory or a checkpoint): a "base" row
    eval_max_prompts: int = 0  # evaluate the first N prompts only (0 = all)
    skip_long: bool = False  # skip prompts that leave no room for max_new_tokens (HH has some) instead of stopping
    samples_md: int = 8  # prompts in samples.md (with out_dir): every model's answer side by side (0 = none)
    bon: str = ""  # best-of-N from the reference, e.g. 1,2,4,8,16,32,64: rows bon_N and a reference curve on the frontier
    samples_per_prompt: int = 4  # samples at `temperature` per prompt (the rates average over all of them)
    temperature: float = 1.0  # the sampling temperature the rates are measured at
    max_new_tokens: int = 48  # response length limit (the toy world: longest prompt 72 + 48 <= 128); unended = malformed
    batch_size: int = 256  # sequences per forward / generate call (GPT-2 at 1024 tokens: ~16, the logits are B x T x 50257)
    out_dir: str = ""  # if set, write results.json, table.md, metrics.png and frontier.png there
    overwrite: bool = False  # allow replacing the results already in out_dir (each file is replaced when rewritten)
    runs: str = ""  # ppo.py / grpo.py / dpo.py run dirs (name:dir,...) whose periodic evaluations make overoptimization.png
    curves: str = ""  # training metrics (key,...) of the runs to plot against iteration in training_curves.png
    device: str = "auto"  # 'auto', 'cpu', 'cuda'
    dtype: str = "auto"  # autocast dtype for sampling
    seed: int = 1234
    aggregate: str = ""  # seed_1:dir,... of evaluate.py out_dirs (the same models, one seed each): mean +- std, no sampling


RESULT_FILES = ("table.md", "results.json", "metrics.png", "frontier.png", "overoptimization.png", "training_curves.png",
                "samples.md")  # what out_dir gets
RANGES = {"temperature": at_least(0), "judge": one_of("auto", "toy", "none"), "eval_max_prompts": at_least(0),
          "samples_md": at_least(0), "bon": (lambda v: all(x.strip().isdigit() and int(x) >= 1 for x in v.split(",")) if v else True,
                                             "comma-separated integers >= 1, e.g. 1,2,4,8")}  # temperature 0 = greedy; the shared ranges are in configurator.RANGES


def parse_checkpoints(spec):
    """'a:out/x,out/y' -> [('a', 'out/x'), ('y', 'out/y')]"""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, path = item.rpartition(":") if ":" in item else ("", "", item)
        out.append((name or os.path.basename(os.path.normpath(path)), path))
    return out


def distinct_n(texts, n):
    """Distinct n-grams of words over all texts, divided by their total number (Li et al. 2016)."""
    grams = [tuple(w[i:i + n]) for w in (t.split() for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


@torch.no_grad()
def sample_and_measure(policy, ref_model, reward_model, tok, prompts, config, rt, temperature, judge_model=None):
    """Sample one response per prompt (temperature 0 = greedy), in batches, with PPO's rollout (no value
    model) -> per-sample dicts: text, ended, kl (to the reference, nats), rm_score, length, and with a judge
    reward model judge_rm_score (the same responses, scored by it)."""
    out = []
    for i in range(0, len(prompts), config.batch_size):
        prompt_ids = [tok.encode(format_prompt(p)) for p in prompts[i:i + config.batch_size]]
        batch = rollout(policy, ref_model, None, reward_model, prompt_ids, tok, config.max_new_tokens, temperature,
                        missing_eos_penalty=0.0, rt=rt)
        kl = (batch["logp"] - batch["ref_logp"]).sum(1).tolist()
        judged = [None] * len(kl)
        if judge_model is not None:
            with rt.autocast:
                judged = response_scores(judge_model, batch["tokens"], batch["attention_mask"], batch["T0"], batch["mask"]).tolist()
        for (text, ended), k, r, j, n in zip(decode_responses(tok, batch), kl, batch["raw_scores"].tolist(), judged,
                                             batch["mask"].sum(1).tolist()):
            out.append({"text": text, "ended": ended, "kl": k, "rm_score": r, "length": n,
                        **({"judge_rm_score": j} if j is not None else {})})
    return out


@torch.no_grad()
def perplexity(model, tok, records, path, rt, batch_size):
    examples, _ = training_examples(records, tok, model.config.block_size, path, skip_long=True)
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        x, y = collate(examples[i:i + batch_size], tok.pad_id, rt.device)
        with rt.autocast:
            logits, _ = model(x)
        total += supervised_loss_sum(logits, y).item()
        count += (y != -100).sum().item()
    return math.exp(total / count)


def win_rate(scores, reference_scores):
    """Fraction of samples scoring above the reference's sample for the same prompt; a tie counts one half."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, reference_scores)) / len(scores)


def evaluate_model(policy, ref_model, reward_model, tok, prompt_records, demos, config, rt, gold_judge, judge_model=None,
                   jailbreak_records=(), reference=None):
    """One model's row, and its samples (for the reference's win-rate baseline and samples.md). reference: the
    reference model's samples, to compute win rates against (None: this is the reference). jailbreak_records: the
    jailbreak prompts, sampled after everything else (so the other columns are the same with or without them)."""
    prompts = [r["prompt"] for r in prompt_records for _ in range(config.samples_per_prompt)]
    torch.manual_seed(config.seed)
    samples = sample_and_measure(policy, ref_model, reward_model, tok, prompts, config, rt, config.temperature, judge_model)
    n = len(samples)
    row = {}
    if gold_judge:
        verdicts = [judge(p, s["text"], s["ended"]) for p, s in zip(prompts, samples)]
        for s, v in zip(samples, verdicts):
            s["score"] = v["score"]
        row = summarize(verdicts)
        greedy_prompts = [r["prompt"] for r in prompt_records]
        greedy = sample_and_measure(policy, ref_model, reward_model, tok, greedy_prompts, config, rt, 0.0)
        greedy_summary = summarize([judge(p, s["text"], s["ended"]) for p, s in zip(greedy_prompts, greedy)])
        row.update({f"greedy_{k}": v for k, v in greedy_summary.items() if k != "n"})
    row.update({
        "rm_score": sum(s["rm_score"] for s in samples) / n,
        "kl": sum(s["kl"] for s in samples) / n,
        "length": sum(s["length"] for s in samples) / n,
        "perplexity": perplexity(policy, tok, demos, config.demos, rt, config.batch_size),
        "distinct_1": distinct_n([s["text"] for s in samples], 1),
        "distinct_2": distinct_n([s["text"] for s in samples], 2),
    })
    if judge_model is not None:
        row["judge_rm_score"] = sum(s["judge_rm_score"] for s in samples) / n
    # win rates against the reference's sample for the same prompt: by the gold judge where there is one, else
    # by the reward model; by the judge reward model too. The reference against itself: every comparison a tie.
    win_key = "score" if gold_judge else "rm_score"
    for column, key in [("win_rate", win_key)] + ([("judge_win_rate", "judge_rm_score")] if judge_model is not None else []):
        row[column] = 0.5 if reference is None else win_rate([s[key] for s in samples], [s[key] for s in reference])
    if jailbreak_records:
        records = [r for r in jailbreak_records for _ in range(config.samples_per_prompt)]
        # only the text is judged here: sampling alone, no reference or reward-model forwards
        wrapped = generate_responses(policy, tok, [r["prompt"] for r in records], config.max_new_tokens, config.temperature,
                                     batch_size=config.batch_size, device=rt.device, autocast=rt.autocast)
        row.update(jailbreak_summary(records, [text for text, _ in wrapped]))
    return row, samples


def bon_kl(n):
    """KL(best-of-n || reference) = log n - (n - 1) / n nats, exactly, for a reward with no ties (Stiennon et al.
    2020, appendix G; Beirami et al. 2024 show it is an upper bound in general)."""
    return math.log(n) - (n - 1) / n


def best_of_n(scores, n):
    """Indices of the best-of-n choices among each prompt's samples: scores (P, M), M samples per prompt from the
    reference, M a multiple of n, split into M / n disjoint groups of n in order; each group keeps its highest
    score (the first on a tie). Returns (P, M / n) column indices into scores. Averaging over the M / n groups
    gives the same expectation as one best-of-n draw per prompt, with less noise."""
    P, M = scores.shape
    groups = scores.view(P, M // n, n)  # (P, M / n, n)
    return groups.argmax(dim=2) + torch.arange(0, M, n)  # (P, M / n)


def bon_rows(samples, prompts, ns, per_prompt, gold_judge):
    """The rows bon_N: for each N the chosen samples' mean reward-model score (and judge score), the gold judge's
    rates where there is one, their length, and the analytic KL. samples: per_prompt samples for each prompt in turn."""
    rows = {}
    scores = torch.tensor([s["rm_score"] for s in samples]).view(len(prompts), per_prompt)
    for n in ns:
        chosen = [samples[p * per_prompt + j] for p, row in enumerate(best_of_n(scores, n).tolist()) for j in row]
        chosen_prompts = [prompts[p] for p in range(len(prompts)) for _ in range(per_prompt // n)]
        row = summarize([judge(p, s["text"], s["ended"]) for p, s in zip(chosen_prompts, chosen)]) if gold_judge else {}
        row.update({k: sum(s[k] for s in chosen) / len(chosen) for k in ("rm_score", "judge_rm_score", "length") if k in chosen[0]})
        row["kl"] = bon_kl(n)
        rows[f"bon_{n}"] = row
    return rows


def samples_markdown(prompt_records, samples_of, samples_per_prompt, n_prompts):
    """samples.md: the first n_prompts prompts, each with every model's first sample for it, side by side."""
    lines = [f"# The same prompts, answered by every model (the first of {samples_per_prompt} samples per prompt)", ""]
    for i, record in enumerate(prompt_records[:n_prompts]):
        lines += [f"## Prompt {i + 1}", "", "```", record["prompt"], "```", ""]
        for name, samples in samples_of.items():
            s = samples[i * samples_per_prompt]
            scores = f"rm {s['rm_score']:+.2f}" + (f", judge rm {s['judge_rm_score']:+.2f}" if "judge_rm_score" in s else "")
            ending = "" if s["ended"] else " (no end-of-text)"
            lines += [f"**{name}** ({scores}){ending}:", "", "> " + s["text"].replace("\n", "\n> "), ""]
    return "\n".join(lines) + "\n"


# --- several seeds: mean +- std, and intervals for each model's difference to its own SFT ---

# t_{0.975, df}, the two-sided 95% quantile of Student's t (any statistics table): the interval for the mean of n
# paired differences is mean +- t_{0.975, n - 1} * sd / sqrt(n)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def mean_std(values):
    """(mean, sample standard deviation with n - 1; nan for one value)."""
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan


def t_interval(values):
    """The 95% interval for the mean of values (per-seed differences): (mean, low, high). Degrees of freedom between
    the table's entries use the next smaller one (a slightly wider interval); one value gives (mean, nan, nan)."""
    n = len(values)
    mean, sd = mean_std(values)
    if n < 2:
        return mean, math.nan, math.nan
    t = T_975[max(df for df in T_975 if df <= n - 1)]
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def aggregate_seeds(results_of, baseline="sft", pair_columns=("score",)):
    """{seed: results.json's "models"} -> {"models": {name: {column: {"mean", "std", "values"}}}, "vs_baseline": {name:
    {column: {"mean", "low", "high"}}}, "pairwise": {"a - b": {column: {"mean", "low", "high"}}}}: over the models every
    seed has, the numeric columns every seed's row has; vs_baseline from each seed's difference to that seed's
    baseline (paired: the model was trained from it); pairwise the same for every two models (not best-of-N rows),
    paired by seed, for pair_columns."""
    seeds = list(results_of)
    names = [n for n in results_of[seeds[0]] if all(n in results_of[s] for s in seeds)]
    models, vs = {}, {}
    for name in names:
        rows = [results_of[s][name] for s in seeds]
        columns = [c for c, v in rows[0].items() if isinstance(v, (int, float)) and c != "n" and all(c in r for r in rows)]
        models[name] = {}
        for c in columns:
            values = [float(r[c]) for r in rows]
            mean, std = mean_std(values)
            models[name][c] = {"mean": mean, "std": std, "values": values}
        if baseline in names and name != baseline:
            base = [results_of[s][baseline] for s in seeds]
            vs[name] = {c: dict(zip(("mean", "low", "high"), t_interval([float(r[c]) - float(b[c]) for r, b in zip(rows, base)])))
                        for c in columns if all(c in b for b in base)}
    methods = [n for n in names if not n.startswith("bon_")]
    pairwise = {f"{a} - {b}": {c: dict(zip(("mean", "low", "high"), t_interval(
                    [float(results_of[s][a][c]) - float(results_of[s][b][c]) for s in seeds])))
                               for c in pair_columns if c in models[a] and c in models[b]}
                for i, a in enumerate(methods) for b in methods[i + 1:]}
    return {"models": models, "vs_baseline": vs, "pairwise": pairwise}


def format_mean_std(v, signed):
    return "-" if math.isnan(v["mean"]) else (f"{v['mean']:+.2f}" if signed else f"{v['mean']:.2f}") + (
        "" if math.isnan(v["std"]) else f" ± {v['std']:.2f}")


def format_interval(v):
    return "-" if math.isnan(v["mean"]) else f"{v['mean']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}]"


def seeds_tables(agg, columns, diff_columns, n_seeds, baseline="sft"):
    """The markdown of table.md for several seeds: mean ± std per column, then each model's difference to its SFT."""
    return (f"Mean ± standard deviation over {n_seeds} seeds:\n\n"
            + format_table(agg["models"], columns, cell=lambda v, c: format_mean_std(v, signed="score" in c))
            + f"\n\nDifference to the same seed's {baseline}, mean [95% interval] over {n_seeds} seeds (an interval that holds 0:"
              " within noise):\n\n" + format_table(agg["vs_baseline"], diff_columns, cell=lambda v, c: format_interval(v)))


def seeds_table_md(agg, n_seeds):
    """table.md of --aggregate: the SEEDS_COLUMNS and SEEDS_DIFF_COLUMNS the models have, or the columns an
    aggregate written elsewhere names ("columns", "diff_columns": scripts/grpo_verifier_select.py)."""
    first = next(iter(agg["models"].values()))
    columns = agg.get("columns") or [c for c in SEEDS_COLUMNS if c in first]
    diff_columns = agg.get("diff_columns") or [c for c in SEEDS_DIFF_COLUMNS if c in first]
    return seeds_tables(agg, columns, diff_columns, n_seeds)


def aggregate_main(config):
    """--aggregate: read each seed's results.json, write table.md, results.json and frontier.png to out_dir."""
    runs = parse_checkpoints(config.aggregate)
    results_of = {}
    for seed, run_dir in runs:
        path = os.path.join(run_dir, "results.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"--aggregate {seed}:{run_dir}: no results.json there (an evaluate.py --out_dir)")
        results_of[seed] = json.load(open(path))["models"]
    if len(results_of) < 2:
        raise ValueError("--aggregate: pass two or more evaluations (seed:dir,...); one seed has no spread")
    agg = aggregate_seeds(results_of, pair_columns=SEEDS_DIFF_COLUMNS)
    if not agg["models"]:
        raise ValueError(f"--aggregate: no model is in every seed's results ({', '.join(results_of)})")
    first = next(iter(agg["models"].values()))
    table = seeds_table_md(agg, len(results_of))
    print(table)
    if config.out_dir:
        os.makedirs(config.out_dir, exist_ok=True)
        atomic_write_text(os.path.join(config.out_dir, "table.md"), table + "\n")
        atomic_write_text(os.path.join(config.out_dir, "results.json"), json.dumps(
            {"config": vars(config), "seeds": list(results_of), **agg}, indent=2))
        key = "score" if "score" in first else "rm_score"
        means = {name: {c: v["mean"] for c, v in row.items()} for name, row in agg["models"].items() if key in row}
        errors = {name: (row["kl"]["std"], row[key]["std"]) for name, row in agg["models"].items() if key in row}
        # one point per model (grpo and grpo_math are different experiments), one curve for best-of-N
        plot_frontier(means, os.path.join(config.out_dir, "frontier.png"), key, errors=errors,
                      title=f"reward-KL frontier, held-out prompts, {len(results_of)} seeds (bars: ± 1 std)",
                      method=lambda name: "best-of-N" if name.startswith("bon_") else name)


def save_figure(fig, path):
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot_bars(rows, path):
    plt = pyplot()
    metrics = ["score", "harmful_refusal", "over_refusal", "topic_correct", "math_correct", "unanswerable_idk", "well_formed"]
    fig, ax = plt.subplots(figsize=(11, 3.5))
    width = 0.8 / len(rows)
    for k, (name, row) in enumerate(rows.items()):
        ax.bar([i + k * width for i in range(len(metrics))], [row[m] for m in metrics], width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(metrics))], metrics, rotation=15)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title("toy world, held-out prompts, samples at temperature 1")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))  # beside the bars, never over them
    save_figure(fig, path)


def method_of(name):
    """The letters a model's name starts with: 'ppo_beta0.05' -> 'ppo'."""
    return re.match(r"[A-Za-z]*", name).group() or name


def plot_frontier(rows, path, score_key="score", score_label="gold score (temperature 1)", errors=None,
                  title="reward-KL frontier, held-out prompts", method=method_of):
    """A score (the gold score; without a gold judge a reward model's) against KL(pi || pi_sft), one marker and
    line per method (method(name): the model's method), each point named; errors: {name: (kl std, score std)}
    draws error bars (several seeds)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4) if errors is None else (8, 5.5))
    methods = {}
    for name, row in rows.items():
        methods.setdefault(method(name), []).append((row["kl"], row[score_key], name))
    if len(methods) > 10:  # more than the default cycle's colours
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for method, points in methods.items():
        points.sort()
        line, = ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=method)
        if errors is not None:
            xerr, yerr = zip(*[[0 if math.isnan(e) else e for e in errors[p[2]]] for p in points])
            ax.errorbar([p[0] for p in points], [p[1] for p in points], xerr=xerr, yerr=yerr, fmt="none",
                        color=line.get_color(), capsize=2, lw=0.8)
        for kl, score, name in points:
            ax.annotate(name, (kl, score), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("KL(policy || SFT) per response, nats")
    ax.set_ylabel(score_label)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)  # beside the points, never over them
    save_figure(fig, path)


def read_evals(name, run_dir):
    """The periodic evaluation rows (those with eval/gold_score) of a ppo.py, grpo.py or dpo.py run's metrics.jsonl."""
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(metrics_path):
        raise FileNotFoundError(f"--runs {name}:{run_dir}: no metrics.jsonl there (a ppo.py, grpo.py or dpo.py run with toy_eval)")
    return [r for r in read_jsonl(metrics_path) if "eval/gold_score" in r]


def read_training_curves(name, run_dir, keys):
    """{key: (steps, values)} from the training rows of a run's metrics.jsonl (those that have the key)."""
    rows = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    missing = [k for k in keys if not any(k in r for r in rows)]
    if missing:
        raise KeyError(f"--curves {missing[0]}: not a metric of --runs {name}:{run_dir} (see its metrics.jsonl)")
    return {k: ([r["step"] for r in rows if k in r], [r[k] for r in rows if k in r]) for k in keys}


def plot_training_curves(curves, path):
    """One panel per metric, one line per run ({name: read_training_curves(...)}): e.g. the response length of
    GRPO runs that differ only in how the loss is aggregated over tokens."""
    plt = pyplot()
    keys = list(next(iter(curves.values())))
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, run in curves.items():
            ax.plot(*run[key], label=name)
        ax.set(xlabel="iteration", title=key)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_overoptimization(evals, path):
    """Over-optimisation (Gao et al. 2022) from runs' own periodic evaluations ({name: read_evals(...)}). RL runs (PPO, GRPO: with eval/rm_score):
    the reward-model score and the gold score as training goes on, and gold against reward-model score. DPO runs: the gold score and the held-out preference accuracy (its proxy
    objective) against step."""
    plt = pyplot()
    ppo = {n: e for n, e in evals.items() if e and "eval/rm_score" in e[0]}
    dpo = {n: e for n, e in evals.items() if e and "eval/rm_score" not in e[0]}
    fig, axes = plt.subplots(1, 2 * bool(ppo) + bool(dpo), figsize=(5 * (2 * bool(ppo) + bool(dpo)), 4), squeeze=False)
    axes = list(axes[0])
    if ppo:
        left, right = axes.pop(0), axes.pop(0)
        for name, e in ppo.items():
            steps, rm, gold = ([r[k] for r in e] for k in ("step", "eval/rm_score", "eval/gold_score"))
            line, = left.plot(steps, rm, "o--", label=f"{name}: reward model")
            left.plot(steps, gold, "o-", color=line.get_color(), label=f"{name}: gold")
            right.plot(rm, gold, "o-", color=line.get_color(), label=name)
            right.annotate(f"iter {e[-1]['step']}", (rm[-1], gold[-1]), fontsize=7)
        left.set(xlabel="iteration", ylabel="score", title="PPO / GRPO: as training pushes on")
        right.set(xlabel="reward-model score (normalised)", ylabel="gold score", title="PPO / GRPO: gold against proxy reward")
        left.legend(fontsize=7)
        right.legend(fontsize=7)
    if dpo:
        ax = axes.pop(0)
        for name, e in dpo.items():
            steps = [r["step"] for r in e]
            line, = ax.plot(steps, [r["eval/gold_score"] for r in e], "o-", label=f"{name}: gold")
            if "val/rewards/accuracies" in e[0]:
                ax.plot(steps, [r["val/rewards/accuracies"] for r in e], "o--", color=line.get_color(),
                        label=f"{name}: held-out preference accuracy")
        ax.set(xlabel="step", ylabel="score / accuracy", title="DPO: gold against its own objective")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def main():
    config = parse_config(EvalConfig, ranges=RANGES)
    # out_dir may hold other things (the demo writes beside its runs): only our own files count
    existing = [f for f in RESULT_FILES if config.out_dir and os.path.exists(os.path.join(config.out_dir, f))]
    if existing and not config.overwrite:
        raise FileExistsError(f"out_dir {config.out_dir!r} already holds results ({existing[0]}): pass --overwrite=True "
                              f"to replace them, or choose another --out_dir")
    if config.aggregate:
        return aggregate_main(config)
    rt = setup_runtime(config.device, config.dtype, config.seed)
    # --- everything is read and checked before the long sampling starts, and before out_dir is touched ---
    ref_model, ref_tok, _ = load_model(config.reference, key="reference")
    reward_model, rm_tok = load_reward_model(config.reward_dir)
    judge_model, judge_tok = load_reward_model(config.judge_reward_dir, key="judge_reward_dir") if config.judge_reward_dir else (None, None)
    tok = get_tokenizer(ref_tok)
    checkpoints = parse_checkpoints(config.checkpoints)
    if config.base:
        if "base" in dict(checkpoints):
            raise ValueError("--checkpoints: the name 'base' is the --base row's; name that checkpoint otherwise")
        checkpoints = [("base", config.base)] + checkpoints
    if config.bon and any(name.startswith("bon_") for name, _ in checkpoints):
        raise ValueError("--checkpoints: names bon_N are --bon's rows; name that checkpoint otherwise")
    def key_of(name):  # the setting that named a model, and the stages its checkpoint may come from
        return ("base", None) if config.base and name == "base" else ("checkpoints", POLICY_STAGES)
    specs = [("reward_dir", config.reward_dir, rm_tok)] + ([("judge_reward_dir", config.judge_reward_dir, judge_tok)]
                                                           if judge_model is not None else [])
    specs += [(key_of(name)[0], path, tokenizer_of(path, stages=key_of(name)[1], key=key_of(name)[0])) for name, path in checkpoints]
    for key, path, spec in specs:
        if get_tokenizer(spec).spec != tok.spec:
            raise ValueError(f"--{key}: {path}: its tokenizer differs from the reference's ({config.reference})")
    block_size = ref_model.config.block_size
    prompt_records = tokenize_prompts(load_prompts(config.eval_prompts), tok, block_size, config.max_new_tokens,
                                      config.eval_prompts, config.skip_long)[0][:config.eval_max_prompts or None]
    gold_judge = config.judge == "toy" or (config.judge == "auto" and all(is_toy_prompt(r["prompt"]) for r in prompt_records))
    demos = load_sft(config.demos)
    if gold_judge:  # a DataError naming the first prompt or demonstration the judge cannot score
        check_prompts(prompt_records, config.eval_prompts)
        check_prompts(demos, config.demos)
    jailbreak_records = []
    if config.jailbreak_prompts:
        if not gold_judge:
            raise ValueError("--jailbreak_prompts: the jailbreak columns are the toy world's (its refusal sentence); "
                             "these evaluation prompts have no gold judge")
        jailbreak_records = tokenize_prompts(check_jailbreak_prompts(load_prompts(config.jailbreak_prompts), config.jailbreak_prompts),
                                             tok, block_size, config.max_new_tokens, config.jailbreak_prompts, False)[0]
    training_examples(demos, tok, block_size, config.demos, skip_long=True)  # every character known, some example fits
    run_evals = {name: read_evals(name, run_dir) for name, run_dir in parse_checkpoints(config.runs)}
    curve_keys = [k for k in config.curves.split(",") if k]
    if curve_keys and not run_evals:
        raise ValueError("--curves: the curves are the --runs' training metrics; pass --runs=name:dir,...")
    run_curves = {name: read_training_curves(name, run_dir, curve_keys) for name, run_dir in parse_checkpoints(config.runs)} if curve_keys else {}
    if config.out_dir:
        os.makedirs(config.out_dir, exist_ok=True)
    for m in (ref_model, reward_model, judge_model):
        if m is not None:
            m.to(rt.device).eval()
    measure = dict(tok=tok, prompt_records=prompt_records, demos=demos, config=config, rt=rt, gold_judge=gold_judge,
                   judge_model=judge_model, jailbreak_records=jailbreak_records)
    reference_row, reference_samples = evaluate_model(ref_model, ref_model, reward_model, **measure)
    rows, samples_of = {}, {}
    for name, path in checkpoints:
        if os.path.realpath(path) == os.path.realpath(config.reference):
            rows[name], samples_of[name] = reference_row, reference_samples
            print(f"evaluated {name} ({path}, the reference)", flush=True)
            continue
        key, stages = key_of(name)
        policy, _, _ = load_model(path, stages=stages, key=key)
        policy.to(rt.device).eval()
        rows[name], samples_of[name] = evaluate_model(policy, ref_model, reward_model, reference=reference_samples, **measure)
        print(f"evaluated {name} ({path})", flush=True)
    if config.bon:  # best-of-N from the reference: the largest N's samples, once, split into groups for the smaller N
        ns = sorted({int(x) for x in config.bon.split(",")})
        per_prompt = math.lcm(*ns)
        prompts = [r["prompt"] for r in prompt_records]
        torch.manual_seed(config.seed + 1)
        samples = sample_and_measure(ref_model, ref_model, reward_model, tok, [p for p in prompts for _ in range(per_prompt)],
                                     config, rt, config.temperature, judge_model)
        rows.update(bon_rows(samples, prompts, ns, per_prompt, gold_judge))
        print(f"evaluated best-of-N from the reference, N = {config.bon} ({per_prompt} samples per prompt)", flush=True)
    print(f"\n{len(prompt_records)} held-out prompts x {config.samples_per_prompt} samples at temperature "
          f"{config.temperature:g}" + ("; greedy_score: one greedy response per prompt" if gold_judge else
                                       "; no gold judge: reward models only") + "\n")
    if gold_judge:
        # what SFT imitates: the gold judge on the demonstrations (only the judge's own rates; the rest is "-")
        demo_row = summarize([judge(r["prompt"], r["response"]) for r in demos])
        extra = ["judge_rm_score", "judge_win_rate"] if judge_model is not None else []
        extra += ["jailbreak_refusal", "jailbreak_over_refusal"] if jailbreak_records else []
        table = format_table({"demonstrations": demo_row, **rows}, TABLE_COLUMNS + extra)
    else:
        demo_row = None
        table = format_table(rows, [c for c in REWARD_COLUMNS if judge_model is not None or not c.startswith("judge_")])
    print(table)
    if config.out_dir:
        atomic_write_text(os.path.join(config.out_dir, "table.md"), table + "\n")
        atomic_write_text(os.path.join(config.out_dir, "results.json"), json.dumps(
            {"config": vars(config), "gold_judge": gold_judge, "demonstrations": demo_row, "models": rows}, indent=2))
        if config.samples_md:
            atomic_write_text(os.path.join(config.out_dir, "samples.md"),
                              samples_markdown(prompt_records, samples_of, config.samples_per_prompt, config.samples_md))
        if gold_judge:
            plot_bars({"demonstrations": demo_row, **rows}, os.path.join(config.out_dir, "metrics.png"))
            plot_frontier(rows, os.path.join(config.out_dir, "frontier.png"))
        else:
            key = "judge_rm_score" if judge_model is not None else "rm_score"
            plot_frontier(rows, os.path.join(config.out_dir, "frontier.png"), key,
                          "judge reward model's score" if judge_model is not None else "reward model's score (normalised)")
        if run_evals:
            plot_overoptimization(run_evals, os.path.join(config.out_dir, "overoptimization.png"))
        if run_curves:
            plot_training_curves(run_curves, os.path.join(config.out_dir, "training_curves.png"))


if __name__ == "__main__":
    run_cli(main)
