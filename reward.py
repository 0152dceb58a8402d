"""
reward.py -- a Bradley-Terry reward model (Ziegler et al. 2019; Stiennon et al. 2020; InstructGPT,
Ouyang et al. 2022, section 3.5) on the same GPT as the policy, with a scalar head.

A preference pair is (prompt, chosen, rejected). The reward r(x, y) is the scalar head read at the
response's end-of-text token -- the first position that has seen the whole response. Sequences are
right-padded (pad id != end-of-text), so under causal attention nothing after end-of-text can change
the score. Bradley-Terry says P(chosen > rejected) = sigma(r_c - r_r), so the loss is

    L = - mean_pairs log sigma(r_c - r_r - margin)          (margin 0 by default)
    accuracy = mean(r_c > r_r)                               (a tie counts as wrong)

with chosen and rejected scored in one concatenated forward pass. After training the reward is
normalised, as in Ziegler et al., so that responses sampled from the SFT policy on the RL prompts score
mean 0 and std 1: r_norm = (r - mean) / std, folded into the head's weight and bias (and recorded in
the checkpoint as reward_norm), so every later stage simply calls the model. The samples are scored as
PPO's rollout scores its responses: at their last token, which is the end-of-text, or the last token
of a response cut at max_new_tokens (before, these got an end-of-text appended that they never produced).

Run (toy world on CPU; after sft.py):
    python reward.py --config config/reward_toy.py
GPT-2-small on HH-RLHF (one GPU), or several with torchrun:
    python reward.py --config config/reward_gpt2_hh.py
    torchrun --standalone --nproc_per_node=8 reward.py --config config/reward_gpt2_hh.py

Deviations: InstructGPT trains on all K-choose-2 comparisons of K responses per prompt as one batch
element; our data has one pair per prompt. Pairs with identical chosen and rejected are skipped and
counted (they carry no preference).
"""

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from atomic_io import atomic_save_figure, atomic_write_text
from checkpoint import (load_checkpoint, load_model, model_from_checkpoint, prepare_out_dir, restore_training_state,
                        save_checkpoint, tokenizer_of)
from configurator import at_least, parse_config, run_cli, stop_if_signalled
from data.batches import collate_sequences, tokenize_pairs, tokenize_prompts
from data.formats import format_prompt, format_response, load_prefs, load_prompts
from data.toy.judge import check_prompts
from logger import MetricsLogger, pyplot
from optim import configure_adamw, lr_at, optimizer_step, set_lr
from runtime import (backward_share, batch_indices, check_finite, micro_batches, reduce_metrics, setup_runtime, shard,
                     teardown, wrap_model)
from sampling import decode_response, generate_ids
from tokenizer import get_tokenizer


@dataclass
class RewardConfig:
    # I/O
    out_dir: str = "out/reward"  # checkpoint, metrics.jsonl, curves and calibration PNGs
    resume: bool = False  # continue the run in out_dir from its ckpt.pt
    overwrite: bool = False  # allow replacing a run that already lives in out_dir
    init_from: str = "out/sft"  # the SFT checkpoint dir (or a GPT-2 name / HF dir); a scalar head is added
    norm_policy: str = None  # the policy whose samples define mean 0, std 1 (None = init_from)
    # data
    train_data: str = "data/hh_rlhf/prefs_train.jsonl"  # JSONL {"prompt","chosen","rejected"}
    val_data: str = "data/hh_rlhf/prefs_val.jsonl"  # held-out pairs for accuracy
    rl_prompts: str = "data/hh_rlhf/rl_prompts.jsonl"  # prompts whose SFT samples set the normalisation
    skip_long: bool = False  # drop (and count) pairs longer than block_size instead of stopping with an error
    # loss
    margin: float = 0.0  # subtract from r_c - r_r inside the sigmoid (Llama 2's margin loss)
    # optimisation
    batch_size: int = 8  # pairs per micro-batch per process (2x sequences per forward)
    grad_accum_steps: int = 4  # micro-batches per optimizer step (per process)
    max_iters: int = 1000  # optimizer steps
    learning_rate: float = 1e-5  # peak AdamW learning rate
    min_lr: float = 1e-6  # learning rate at the end of the cosine decay
    warmup_iters: int = 50  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay on 2-D weights
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)
    dropout: float = 0.0  # dropout while training
    overfit_batch: bool = False  # debugging: train on the same first batch every step
    # evaluation and logging
    eval_interval: int = 200  # steps between validation accuracy + checkpoint
    eval_max_examples: int = 1000  # validation pairs used (0 = all)
    log_interval: int = 10  # steps between training-loss lines
    norm_samples: int = 512  # SFT samples on RL prompts for the normalisation (and gold agreement)
    max_new_tokens: int = 128  # response length limit for those samples
    toy_eval: bool = False  # the data is the toy world: also measure agreement with its gold judge
    wandb_project: str = None  # log to Weights & Biases under this project (pip install wandb)
    # system
    device: str = "auto"  # 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'
    dtype: str = "auto"  # 'auto' (bf16, or fp16 on GPUs without bf16), 'float32', 'bfloat16', 'float16'
    compile: bool = False  # torch.compile the model
    seed: int = 1337


RANGES = {"norm_samples": at_least(2)}  # a standard deviation needs two samples; the shared ranges: configurator


# -----------------------------------------------------------------------------
# learning logic

def bradley_terry_loss(r_chosen, r_rejected, margin=0.0):
    """Per-pair losses -log sigma(r_c - r_r - margin) and correctness (r_c > r_r; ties are wrong).
    r_chosen, r_rejected: (B,). logsigmoid is the numerically stable form of log(sigma(.))."""
    losses = -F.logsigmoid(r_chosen - r_rejected - margin)  # (B,)
    correct = (r_chosen > r_rejected).float()  # (B,)
    return losses, correct


def end_scores(scores, lengths):
    """The scalar head read at each sequence's last token (its end-of-text): scores (B, T), lengths (B,)
    -> (B,). With right padding the last real token is at lengths - 1."""
    return scores.gather(1, (lengths - 1)[:, None]).squeeze(1)


def pair_sequences(pairs, eot_id):
    """Tokenised pairs (data.batches.tokenize_pairs) -> [(chosen, rejected)], each prompt + response +
    end-of-text: the reward model reads its score at that last token."""
    return [(prompt + chosen + [eot_id], prompt + rejected + [eot_id]) for prompt, chosen, rejected in pairs]


def collate_pairs(pairs, pad_id, device):
    """[(chosen, rejected)] -> x (2B, T) right-padded, chosen rows first, and lengths (2B,)."""
    return collate_sequences([c for c, _ in pairs] + [r for _, r in pairs], pad_id, device)


def normalize_head(model, raw_scores):
    """Make the head output (r - mean) / std of raw_scores, the rewards of SFT samples (Ziegler et al.):
    r_norm = (w . h + b - mean) / std = (w / std) . h + (b - mean) / std, folded into weight and bias.
    A ValueError if the scores are not finite or all equal (std 0 would make the head infinite)."""
    mean, std = float(np.mean(raw_scores)), float(np.std(raw_scores))
    finite = bool(np.isfinite(raw_scores).all())
    if not finite or std <= 1e-8:
        raise ValueError(f"the reward model's scores of the {len(raw_scores)} samples for the normalisation are "
                         f"{'all equal (std 0)' if finite else 'not finite'}: it cannot be normalised to std 1")
    with torch.no_grad():
        model.score_head.weight.div_(std)
        model.score_head.bias.sub_(mean).div_(std)
    return {"raw_mean": mean, "raw_std": std, "n_samples": len(raw_scores)}


def rankdata(a):
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    a = np.asarray(a, dtype=np.float64)
    sorter = np.argsort(a, kind="mergesort")
    inv = np.empty(len(a), dtype=np.intp)
    inv[sorter] = np.arange(len(a))
    a_sorted = a[sorter]
    new_value = np.r_[True, a_sorted[1:] != a_sorted[:-1]]
    dense = new_value.cumsum()[inv]  # 1-based id of each value's tie group
    bounds = np.r_[np.nonzero(new_value)[0], len(a)]  # where each tie group starts in sorted order
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def spearman(x, y):
    """Spearman's rank correlation: the Pearson correlation of the ranks."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


# -----------------------------------------------------------------------------

@torch.no_grad()
def score_sequences(model, seqs, pad_id, rt, batch_size=64):
    """Reward-model scores of token sequences, each read at its last token: (N,) numpy."""
    out = []
    for i in range(0, len(seqs), batch_size):
        x, lengths = collate_sequences(seqs[i:i + batch_size], pad_id, rt.device)
        with rt.autocast:
            scores = model(x, scores=True)  # (N, T)
        out.append(end_scores(scores.float(), lengths).cpu())
    return torch.cat(out).numpy()


def score_texts(model, tok, prompts, responses, rt, batch_size=64):
    """Reward-model scores of finished (prompt, response) texts, end-of-text appended: (N,) numpy."""
    seqs = [tok.encode(format_prompt(p)) + tok.encode(format_response(r)) + [tok.eot_id] for p, r in zip(prompts, responses)]
    return score_sequences(model, seqs, tok.pad_id, rt, batch_size)


@torch.no_grad()
def evaluate_pairs(model, pairs, batch_size, margin, pad_id, rt):
    """Validation loss and accuracy over held-out pairs, split across ranks."""
    model.eval()
    sums = {"loss": torch.zeros((), device=rt.device), "accuracy": torch.zeros((), device=rt.device)}
    mine = shard(pairs, rt)
    for i in range(0, len(mine), batch_size):
        x, lengths = collate_pairs(mine[i:i + batch_size], pad_id, rt.device)  # (2B, T), (2B,)
        with rt.autocast:
            r = end_scores(model(x, scores=True).float(), lengths)  # (2B,)
        losses, correct = bradley_terry_loss(r[:len(r) // 2], r[len(r) // 2:], margin)
        sums["loss"] += losses.sum()
        sums["accuracy"] += correct.sum()
    model.train()
    return reduce_metrics(sums, len(pairs))


def main():
    config = parse_config(RewardConfig, ranges=RANGES)
    rt = setup_runtime(config.device, config.dtype, config.seed)

    # --- models and tokenizer: the SFT model with a fresh scalar head; the policy whose samples set the scale ------
    resume_ckpt = load_checkpoint(config.out_dir, stages=("reward",), key="out_dir") if config.resume else None
    if resume_ckpt is not None and "reward_norm" in resume_ckpt:
        raise ValueError(f"--out_dir={config.out_dir}: this reward model is finished (trained and normalised); "
                         f"there is nothing to resume")
    if resume_ckpt is not None:
        model, tok_name = model_from_checkpoint(resume_ckpt), resume_ckpt["tokenizer"]
    else:
        model, tok_name, _ = load_model(config.init_from, dropout=config.dropout, key="init_from")
        model.add_scalar_head()
    tok = get_tokenizer(tok_name)
    # the policy whose samples set the scale at the end: checked now, loaded then
    norm_policy = config.norm_policy or config.init_from
    if get_tokenizer(tokenizer_of(norm_policy, key="norm_policy" if config.norm_policy else "init_from")).spec != tok.spec:
        raise ValueError(f"--norm_policy={norm_policy}: its tokenizer is not the reward model's")

    # --- data, validated before anything is written ------------------------------------------------
    def pairs(records, path):
        tokenized, n_identical, n_long = tokenize_pairs(records, tok, model.config.block_size, path, config.skip_long,
                                                        shifted=False)  # the score is read at the last token
        return pair_sequences(tokenized, tok.eot_id), n_identical, n_long
    train, n_identical, n_long = pairs(load_prefs(config.train_data), config.train_data)
    val_records = load_prefs(config.val_data)
    val = pairs(val_records, config.val_data)[0][:config.eval_max_examples or None]
    # the RL prompts, whose samples set the normalisation at the end: each must fit with room for a response
    # (samples stop at max_new_tokens or at the end of the context window, whichever comes first)
    rl_records, rl_prompt_ids, _ = tokenize_prompts(load_prompts(config.rl_prompts)[:config.norm_samples], tok,
                                                    model.config.block_size, 1, config.rl_prompts, config.skip_long)
    if config.toy_eval:  # the gold report judges the held-out pairs and the samples on the RL prompts
        check_prompts(val_records[:len(val)], config.val_data)
        check_prompts(rl_records, config.rl_prompts)
    global_batch = config.batch_size * config.grad_accum_steps * rt.world_size
    if rt.master:
        prepare_out_dir(config.out_dir, config.resume, config.overwrite, inputs={
            "init_from": config.init_from, "norm_policy": config.norm_policy, "train_data": config.train_data,
            "val_data": config.val_data, "rl_prompts": config.rl_prompts})
        print(f"reward: {len(train)} train pairs (skipped: {n_identical} identical, {n_long} too long), {len(val)} val pairs; "
              f"{global_batch} pairs per step = {config.batch_size} x {config.grad_accum_steps} x {rt.world_size} processes; "
              f"{config.max_iters} steps; {model.get_num_params() / 1e6:.2f}M parameters; device {rt.device}, dtype {rt.dtype}")

    # --- optimizer, DDP -------------------------------------------------------------------------------
    model.to(rt.device)
    optimizer = configure_adamw(model, config.learning_rate, config.weight_decay, (config.beta1, config.beta2), rt.device_type)
    step = restore_training_state(resume_ckpt, optimizer, rt.scaler) if resume_ckpt is not None else 0
    del resume_ckpt
    raw_model = model
    model = wrap_model(model, rt, config.compile)
    logger = MetricsLogger(config, enabled=rt.master, start_step=step)

    # --- the training loop -------------------------------------------------------------------------------
    model.train()
    while step < config.max_iters:
        stop_if_signalled()  # a Ctrl-C / SIGTERM whose exception Python swallowed (configurator.py)
        lr = lr_at(step, config.learning_rate, config.min_lr, config.warmup_iters, config.max_iters)
        set_lr(optimizer, lr)
        step_pairs = [train[i] for i in batch_indices(len(train), global_batch, config.seed, 0 if config.overfit_batch else step)]
        sums = {"loss/train": torch.zeros((), device=rt.device), "reward/accuracy_train": torch.zeros((), device=rt.device)}
        for mb_pairs, sync_context in micro_batches(model, step_pairs, config.batch_size, rt):
            x, lengths = collate_pairs(mb_pairs, tok.pad_id, rt.device)  # (2B, T), (2B,)
            with sync_context:
                with rt.autocast:
                    scores = model(x, scores=True)  # (2B, T): chosen rows, then rejected rows
                r = end_scores(scores.float(), lengths)  # (2B,)
                losses, correct = bradley_terry_loss(r[:len(r) // 2], r[len(r) // 2:], config.margin)  # (B,)
                backward_share(losses.sum(), global_batch, rt)  # the mean over every pair of the step
            sums["loss/train"] += losses.detach().sum()
            sums["reward/accuracy_train"] += correct.sum()
        grad_norm = optimizer_step(model, optimizer, rt.scaler, config.grad_clip)
        metrics = reduce_metrics(sums, global_batch)
        step += 1
        check_finite({**metrics, "grad_norm": grad_norm}, step, config.out_dir)
        if step % config.log_interval == 0 or step == config.max_iters:
            logger.log_step(step, metrics, lr, grad_norm, config.max_iters)
        if step % config.eval_interval == 0 or step == config.max_iters:
            val_metrics = evaluate_pairs(model, val, config.batch_size, config.margin, tok.pad_id, rt)
            val_metrics = {"loss/val": val_metrics["loss"], "reward/accuracy_val": val_metrics["accuracy"]}
            check_finite(val_metrics, step, config.out_dir)
            logger.log(step, val_metrics, config.max_iters)
            if rt.master:  # at max_iters too: a failed normalisation below then keeps the trained model (resume redoes it)
                save_checkpoint(config.out_dir, raw_model, config, step, tok.spec, optimizer, rt.scaler, stage="reward")
            logger.plot(os.path.join(config.out_dir, "curves.png"),
                        ["loss/train", "loss/val", "reward/accuracy_train", "reward/accuracy_val"], "reward model")

    # --- normalisation on SFT samples, evaluation against the gold judge, saving ------------------------------
    val_metrics = evaluate_pairs(model, val, config.batch_size, config.margin, tok.pad_id, rt)
    if rt.master:
        raw_model.eval()
        policy, _, _ = load_model(norm_policy)
        responses = generate_ids(policy.to(rt.device).eval(), tok, rl_prompt_ids, config.max_new_tokens, temperature=1.0,
                                 device=rt.device, autocast=rt.autocast)
        del policy
        # scored as PPO's rollout will score them: at the last token, end-of-text if the response has one
        raw = score_sequences(raw_model, [p + r for p, r in zip(rl_prompt_ids, responses)], tok.pad_id, rt)  # (norm_samples,)
        samples = [decode_response(tok, r) for r in responses]  # (text, ended)
        # the gold report reads the trained (raw) scores: sigma(r_c - r_r) is the Bradley-Terry prediction
        # only before the rescaling by 1/std, and the Spearman correlation does not change with it
        gold_report = toy_gold_report(raw_model, tok, val_records[:len(val)], [r["prompt"] for r in rl_records], samples,
                                      raw, rt, config.out_dir) if config.toy_eval else {}
        reward_norm = normalize_head(raw_model, raw)
        report = {"val_accuracy": val_metrics["accuracy"], "val_loss": val_metrics["loss"], **reward_norm, **gold_report}
        save_checkpoint(config.out_dir, raw_model, config, step, tok.spec, optimizer, rt.scaler, stage="reward",
                        extra={"reward_norm": reward_norm, "report": report})
        atomic_write_text(os.path.join(config.out_dir, "report.json"), json.dumps(report, indent=2))
        print("reward: " + " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items()))
    logger.finish()
    teardown(rt)


def toy_gold_report(model, tok, val_records, rl_prompts, samples, sample_rewards, rt, out_dir):
    """Agreement of the trained reward model (before normalisation) with the toy world's gold judge:
    accuracy against the gold ranking on held-out pairs (pairs the gold judge ties are left out; also per
    kind), Spearman correlation of reward with gold score on held-out responses and on fresh SFT samples
    (sample_rewards, their scores), and a calibration plot of the predicted
    P(chosen > rejected) = sigma(r_c - r_r) against how often the gold judge agrees."""
    from data.toy.judge import score as gold_score
    prompts = [r["prompt"] for r in val_records]
    r_c = score_texts(model, tok, prompts, [r["chosen"] for r in val_records], rt)
    r_r = score_texts(model, tok, prompts, [r["rejected"] for r in val_records], rt)
    g_c = np.array([gold_score(p, r["chosen"]) for p, r in zip(prompts, val_records)])
    g_r = np.array([gold_score(p, r["rejected"]) for p, r in zip(prompts, val_records)])
    untied = g_c != g_r
    agrees = (r_c > r_r) == (g_c > g_r)  # (pairs,) the reward model ranks the pair as the gold judge does
    gold_acc = float(agrees[untied].mean())
    kinds = np.array([r.get("kind", "all") for r in val_records])
    gold_acc_by_kind = {str(k): round(float(agrees[untied & (kinds == k)].mean()), 4) for k in sorted(set(kinds[untied]))}
    sample_gold = np.array([gold_score(p, t, ended) for p, (t, ended) in zip(rl_prompts, samples)])

    # calibration: bin the predicted probability that the labelled-chosen response is better
    p = 1 / (1 + np.exp(-(r_c - r_r)[untied]))
    outcome = (g_c > g_r)[untied].astype(float)
    bins = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(p, bins) - 1, 0, 9)
    points = [(p[which == b].mean(), outcome[which == b].mean(), int((which == b).sum())) for b in range(10) if (which == b).any()]
    fig, ax = pyplot().subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    ax.plot([q[0] for q in points], [q[1] for q in points], "o-", label="reward model")
    ax.set_xlabel("predicted P(chosen better)")
    ax.set_ylabel("rate the gold judge agrees")
    ax.legend()
    fig.tight_layout()
    atomic_save_figure(fig, os.path.join(out_dir, "calibration.png"))
    return {"gold_accuracy_val": gold_acc, "gold_pairs_val": int(untied.sum()), "gold_accuracy_by_kind": gold_acc_by_kind,
            "spearman_val_responses": spearman(np.r_[r_c, r_r], np.r_[g_c, g_r]),
            "spearman_sft_samples": spearman(sample_rewards, sample_gold),
            "calibration": [[round(float(a), 4), round(float(b), 4), n] for a, b, n in points]}


if __name__ == "__main__":
    run_cli(main)
