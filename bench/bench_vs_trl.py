"""
bench_vs_trl.py -- a stage step of ours against the same step in TRL, the library a user would pick instead:
SFT, DPO and GRPO on the same weights, batches and optimizer settings, and generation against transformers'.

    pip install -r requirements-bench.txt        # TRL and what it needs; never needed by the stages or the tests
    python bench/bench_vs_trl.py                 # the numbers for the README
    python bench/bench_vs_trl.py --quick         # fewer rounds, no memory column: a noisier check

--quick took 3.6 minutes on 2 cores that another job was also using; the full run, estimated from it and from
timing its memory processes, 8-9 minutes on quiet cores and about 12 on shared ones (the GPT-2-small rows are
most of it: a DPO step of TRL takes 11-25 s there).

It prints one markdown table: per row TRL's time / ours (> 1 means ours is faster), the median over the rounds
and [min-max], the ratio of the fastest runs, each side's peak resident memory, and a verdict against the
targets of issue 18: >= 2x at GPT-2-small for SFT and DPO, >= 1.5x at the toy geometry, >= 1.5x for GRPO.

The rows (GPT-2-small = GPTConfig() defaults, 124M parameters; toy = config/sft_toy.py's 4 layers, 128 wide,
vocab 64, context 128; random weights, nothing is downloaded; bf16 autocast on CPU unless marked fp32):
- SFT step: GPT-2-small 4 examples of 256 positions; toy 32 examples of 24-120 tokens. Ours is sft.py's step
  (forward, sft.supervised_loss_sum, runtime.backward_share, optim.optimizer_step); TRL's is SFTTrainer's,
  given token ids and labels with the prompt masked, the loss on the response and its end-of-text as ours
  (TRL takes the whole 257-token sequence and shifts inside, ours the 256 inputs: 0.4% more positions for TRL).
- DPO step: GPT-2-small 4 pairs, toy 32 pairs. Ours is dpo.py's (dpo.concatenated_logps, dpo.preference_losses
  with the reference log-probs computed once before training, as dpo.py does); TRL's DPOTrainer with
  precompute_ref_log_probs=True (also computed once, at set-up) and, at GPT-2-small, =False (TRL's default: a
  reference forward every step). Plain DPO on both: config/dpo_*'s beta and learning rate, no label smoothing, no RPO term.
- generate: 64 prompts of 16 tokens, 48 new tokens each, greedy, no end-of-text, toy geometry: our GPT.generate
  (KV cache) against transformers' generate (its KV cache), in bf16 autocast and in fp32.
- GRPO iteration, toy: config/grpo_toy.py (P = 16 prompts x G = 4, 48 new tokens, temperature 1, 1 epoch of
  minibatches of 16 = 4 optimizer steps, beta 0.1 with the k3 KL in the loss, GRPO's per-response loss, lr 5e-5).
  Ours is grpo.py's iteration: ppo.rollout (sampling with the KV cache, log pi and the reference's log-probs),
  ppo.decode_responses, the reward, grpo.group_advantages, grpo.grpo_update. TRL's is GRPOTrainer's 4 optimizer
  steps with num_generations=4, steps_per_generation=4 (one generation of 64 completions, then 4 minibatches
  of 16), loss_type='grpo', scale_rewards='group', beta=0.1, the same clip range. Prompts: the same 16 random
  token sequences of 16-72 tokens. Reward: the same Python function of the completion's token ids on both
  sides (how many of them are even numbers; the end-of-text token included, as in both masks).

What a timed region holds:
- ours: one call of the stage's step, from the batch as the stage holds it (lists of token ids, collated
  inside the step as the stage does) to the optimizer step and the logged numbers as floats. The learning-rate
  schedule (one float per step) is left out: constant here, as TRL's is set to be.
- TRL: measured from inside trainer.train() by a TrainerCallback: from on_step_begin to on_step_end, i.e.
  TRL's training_step (its compute_loss, metrics and backward), gradient clipping, the optimizer and scheduler
  steps and zero_grad; for GRPO, the 4 steps of one generation, including the generation, scoring and old and
  reference log-probs that TRL does in its first step. Not timed: set-up (model loading, dataset tokenising,
  precomputed reference log-probs on both sides), and the data loader's fetch and collation before each step.
- generation: one generate() call on each side.

How fairness is ensured: TRL's model is our GPT written with GPT.save_pretrained and read with
GPT2LMHeadModel.from_pretrained (same weights; attention through SDPA; dropout 0 on both); the same token ids
(TRL's tokenizer is a word-level one whose words are the ids, so its tokenising gives back exactly our ids);
the same AdamW (fused torch AdamW, the same lr, betas, weight decay on the same tensors, grad clip 1.0, a
constant lr); the same dtype (bf16 autocast: ours through runtime.setup_runtime, TRL through bf16=True);
TRL's gradient checkpointing, which TRL turns on by default, turned off, as ours has none. The printed first
losses (SFT), sequence log-probs (DPO), rewards and lengths (GRPO) and greedy tokens (generation) check that both
sides compute the same thing (for GRPO the samples differ, so mean reward and length agree only in distribution).

Timing on a noisy machine (bench/bench_model.py's rules and helpers): warm-up rounds first, not kept; every
round times ours and TRL back to back and the order flips each round; the ratio is the median of the per-round
ratios with [min-max]; a verdict whose range straddles its target says "within noise"; the fastest-runs ratio
is the better estimate when bursts of noise hit most rounds. Both sides are timed in one process; peak resident
memory (ru_maxrss) is measured separately, each side in a fresh process running the same row for two steps
(`--side=ours|trl --row=NAME`): ours' process never imports transformers or TRL (about 160 and 90 MiB of the
peak on their side is those imports alone; torch itself is about 220 MiB on both).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the stage scripts; importing them runs nothing
from configurator import parse_config  # noqa: E402
from data.batches import collate  # noqa: E402
from dpo import (DPOConfig, concatenated_logps, pair_examples, pair_metrics, preference_losses,  # noqa: E402
                 reference_logps, response_lengths)
from grpo import RANGES as GRPO_RANGES, GRPOConfig, group_advantages, grpo_update  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from optim import configure_adamw, optimizer_step  # noqa: E402
from ppo import decode_responses, rollout  # noqa: E402
from runtime import accumulate, backward_share, reduce_metrics, setup_runtime  # noqa: E402
from sft import SFTConfig, build_example, supervised_loss_sum  # noqa: E402
from tokenizer import CharTokenizer  # noqa: E402

# transformers, TRL and bench_model's helpers (which import transformers) are imported inside the functions that
# need them: the process that measures ours' memory must not load them

# -----------------------------------------------------------------------------------------------------
# what to run

GEOMETRIES = {"GPT-2-small": GPTConfig(),  # 12 layers, 12 heads, 768 wide, vocab 50257
              "toy": GPTConfig(block_size=128, vocab_size=64, n_layer=4, n_head=4, n_embd=128)}  # config/sft_toy.py
PAD_ID, EOT_ID = 0, 1  # as the toy CharTokenizer; the data's other tokens are drawn from 2 .. vocab - 1
SEED = 1337


@dataclass
class Row:
    name: str  # --row=name
    label: str  # the table's first column
    kind: str  # 'sft', 'dpo', 'generate' or 'grpo'
    geometry: str  # a key of GEOMETRIES
    size: int  # examples (SFT), pairs (DPO), prompts (generate, GRPO)
    target: float  # TRL time / ours at least this (issue 18)
    dtype: str = "bfloat16"  # 'bfloat16' (autocast) or 'float32'
    precompute_ref: bool = True  # DPO: TRL with precompute_ref_log_probs


ROWS = [
    Row("sft_gpt2", "SFT step, GPT-2-small, 4 x 256", "sft", "GPT-2-small", 4, 2.0),
    Row("dpo_gpt2", "DPO step, GPT-2-small, 4 pairs, TRL with precomputed reference", "dpo", "GPT-2-small", 4, 2.0),
    Row("dpo_gpt2_ref", "DPO step, GPT-2-small, 4 pairs, TRL running the reference each step", "dpo", "GPT-2-small", 4,
        2.0, precompute_ref=False),
    Row("sft_toy", "SFT step, toy, 32 examples", "sft", "toy", 32, 1.5),
    Row("dpo_toy", "DPO step, toy, 32 pairs, TRL with precomputed reference", "dpo", "toy", 32, 1.5),
    Row("generate_bf16", "generate 64 x 48 new tokens, toy, bf16 autocast (vs transformers)", "generate", "toy", 64, 1.5),
    Row("generate_fp32", "generate 64 x 48 new tokens, toy, fp32 (vs transformers)", "generate", "toy", 64, 1.5,
        dtype="float32"),
    Row("grpo_toy", "GRPO iteration, toy, 16 prompts x 4, 48 new tokens", "grpo", "toy", 16, 1.5),
]


def rounds(row, quick):
    """(warm-up rounds, timed rounds). GPT-2-small rounds take 10-30 s, toy ones a fraction of a second: the toy
    rows get more rounds (and two warm-ups: TRL's second step is still slower than its later ones)."""
    if row.geometry == "GPT-2-small":
        return (1, 1) if quick else (1, 4)
    return (2, 3) if quick else (2, 9)


def stage_config(row):
    """The stage's own config for the row's hyperparameters (learning rate, betas, weight decay, grad clip, ...)."""
    if row.kind == "sft":
        path = "config/sft_toy.py" if row.geometry == "toy" else "config/sft_gpt2_hh.py"
        return parse_config(SFTConfig, ["--config", os.path.join(ROOT, path)])
    if row.kind == "dpo":
        path = "config/dpo_toy.py" if row.geometry == "toy" else "config/dpo_gpt2_hh.py"
        # plain DPO on both sides: dpo_toy's conservative DPO and RPO term are left out
        return parse_config(DPOConfig, ["--config", os.path.join(ROOT, path), "--label_smoothing=0", "--rpo_alpha=0"])
    return parse_config(GRPOConfig, ["--config", os.path.join(ROOT, "config/grpo_toy.py")], ranges=GRPO_RANGES)


# -----------------------------------------------------------------------------------------------------
# the same data for both sides: lists of token ids


def random_ids(g, n, vocab_size):
    return torch.randint(2, vocab_size, (n,), generator=g).tolist()


def draw(g, low, high):
    """A length from low to high inclusive."""
    return torch.randint(low, high + 1, (), generator=g).item()


def sft_data(row):
    """[(prompt ids, response ids)]: GPT-2-small 257 tokens each with end-of-text (256 positions to predict from),
    toy 16-72 + 8-48 tokens, the toy world's shapes."""
    g, V = torch.Generator().manual_seed(SEED), GEOMETRIES[row.geometry].vocab_size
    out = []
    for _ in range(row.size):
        p = draw(g, 16, 128) if row.geometry == "GPT-2-small" else draw(g, 16, 72)
        r = 256 - p if row.geometry == "GPT-2-small" else draw(g, 8, 48)
        out.append((random_ids(g, p, V), random_ids(g, r, V)))
    return out


def dpo_data(row):
    """[(prompt ids, chosen ids, rejected ids)]: GPT-2-small up to 257 tokens a sequence, toy as sft_data."""
    g, V = torch.Generator().manual_seed(SEED), GEOMETRIES[row.geometry].vocab_size
    out = []
    for _ in range(row.size):
        if row.geometry == "GPT-2-small":
            p = draw(g, 16, 128)
            c, r = draw(g, 64, 256 - p), draw(g, 64, 256 - p)
        else:
            p, c, r = draw(g, 16, 72), draw(g, 8, 48), draw(g, 8, 48)
        out.append((random_ids(g, p, V), random_ids(g, c, V), random_ids(g, r, V)))
    return out


def prompt_data(row, low, high):
    g, V = torch.Generator().manual_seed(SEED), GEOMETRIES[row.geometry].vocab_size
    return [random_ids(g, draw(g, low, high), V) for _ in range(row.size)]


def reward(completion_ids):
    """The reward of both sides' GRPO: how many of the completion's tokens are even ids (a token count, as a rule
    that reads the text would count characters)."""
    return float(sum(1 for t in completion_ids if t % 2 == 0))


def completion_ids(batch):
    """The sampled responses of a rollout batch as lists of ids, up to and including end-of-text."""
    return [row[:n] for row, n in zip(batch["tokens"][:, batch["T0"]:].tolist(), batch["mask"].sum(1).long().tolist())]


def text(ids):
    """TRL's text for our ids: one word per id, which its word-level tokenizer (hf_tokenizer) maps back."""
    return "".join(f" t{i}" for i in ids)


# -----------------------------------------------------------------------------------------------------
# ours: the stage's step, as a no-argument function


def our_model(row):
    torch.manual_seed(SEED)
    return GPT(GEOMETRIES[row.geometry])


def ours_step(row, model):
    """A no-argument function running one step (iteration) of ours on the row's batch; returns its logged numbers."""
    config = stage_config(row)
    rt = setup_runtime("cpu", row.dtype, SEED)
    model.train()
    optimizer = configure_adamw(model, config.learning_rate, config.weight_decay, (config.beta1, config.beta2), "cpu")

    if row.kind == "sft":
        examples = [build_example(prompt, response, EOT_ID) for prompt, response in sft_data(row)]

        def step():  # sft.py's training step with one micro-batch
            x, y = collate(examples, PAD_ID, rt.device)  # (B, T), (B, T)
            n_tokens = int((y != -100).sum())
            with rt.autocast:
                logits, _ = model(x)  # (B, T, vocab)
            loss_sum = supervised_loss_sum(logits, y)
            backward_share(loss_sum, n_tokens, rt)
            optimizer_step(model, optimizer, rt.scaler, config.grad_clip)
            return reduce_metrics({"loss": loss_sum}, n_tokens)
        return step

    if row.kind == "dpo":
        pairs = pair_examples(dpo_data(row), EOT_ID)
        lengths = response_lengths(pairs, rt.device)  # (N, 2) |y_c|, |y_r|
        reference = our_model(row).eval()  # the frozen reference = the initial policy, as dpo.py's SFT checkpoint
        ref_logps = reference_logps(reference, pairs, PAD_ID, rt, len(pairs))  # (N, 2), once, before training
        del reference

        def step():  # dpo.py's training step with one micro-batch
            chosen_logps, rejected_logps = concatenated_logps(model, pairs, PAD_ID, rt)  # (B,), (B,)
            losses, chosen_rewards, rejected_rewards = preference_losses(config, chosen_logps, rejected_logps, ref_logps,
                                                                         lengths)
            backward_share(losses.sum(), len(pairs), rt)
            sums = accumulate({}, pair_metrics(losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps))
            optimizer_step(model, optimizer, rt.scaler, config.grad_clip)
            return reduce_metrics(sums, len(pairs))
        return step

    # grpo
    P, G = config.prompts_per_iter, config.group_size
    assert P == row.size, (P, row.size)
    tok = CharTokenizer("".join(chr(ord("A") + i) for i in range(model.config.vocab_size - 2)))  # pad 0, eot 1
    ref_model = our_model(row).eval().requires_grad_(False)
    prompts = prompt_data(row, 16, 72)
    ids = [p for p in prompts for _ in range(G)]  # (B,) group after group, as grpo.rank_groups lays them out
    group = torch.arange(P).repeat_interleave(G)  # (B,)
    generator = torch.Generator().manual_seed(SEED)

    def iteration():  # grpo.py's iteration: rollout, rewards, advantages, update
        model.eval()
        batch = rollout(model, ref_model, None, None, ids, tok, config.max_new_tokens, config.temperature,
                        config.missing_eos_penalty, rt)
        model.train()
        decode_responses(tok, batch)  # grpo.py decodes every response (its rules and judge read the text)
        rewards = torch.tensor([reward(c) for c in completion_ids(batch)])  # (B,)
        advantages = group_advantages(rewards, group, config.advantage, config.adv_eps)  # (B,)
        update = grpo_update(model, optimizer, batch, advantages, config, generator, rt)
        return {"reward": rewards.mean().item(), "length": batch["mask"].sum(1).mean().item(),
                **reduce_metrics(update)}
    return iteration


def generate_fn(row, model, max_new_tokens=48):
    """A no-argument function: ours (a GPT) or transformers' (a GPT2LMHeadModel) greedy generate of the same 64 prompts."""
    prompts = torch.tensor(prompt_data(row, 16, 16))  # (64, 16)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=(row.dtype == "bfloat16"))
    model.eval()

    def generate():
        with autocast:
            if isinstance(model, GPT):
                return model.generate(prompts, max_new_tokens, temperature=0)
            return model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=max_new_tokens,
                                  do_sample=False, use_cache=True)
    return generate


# -----------------------------------------------------------------------------------------------------
# TRL: its trainer on the same weights, data and optimizer settings


def hf_tokenizer(vocab_size):
    """A word-level tokenizer whose words are our token ids (' t5 t9' -> [5, 9]), with our pad and end-of-text:
    TRL tokenises text, and this gives it back exactly the ids our side trains on."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {"<pad>": PAD_ID, "<eot>": EOT_ID, **{f"t{i}": i for i in range(2, vocab_size)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eot>")


def trl_trainer(row, model, max_steps, out_dir, callbacks=()):
    """TRL's trainer for the row: our model's weights through save_pretrained -> GPT2LMHeadModel.from_pretrained."""
    import trl
    from datasets import Dataset
    from transformers import GPT2LMHeadModel, PrinterCallback
    model.save_pretrained(os.path.join(out_dir, "model"))
    hf = GPT2LMHeadModel.from_pretrained(os.path.join(out_dir, "model"), attn_implementation="sdpa")
    config = stage_config(row)
    tokenizer = hf_tokenizer(hf.config.vocab_size)
    common = dict(output_dir=os.path.join(out_dir, "trl"), use_cpu=True, bf16=(row.dtype == "bfloat16"),
                  gradient_checkpointing=False,  # TRL's default is True; ours checkpoints nothing
                  gradient_accumulation_steps=1, max_steps=max_steps, learning_rate=config.learning_rate,
                  adam_beta1=config.beta1, adam_beta2=config.beta2, weight_decay=config.weight_decay,
                  max_grad_norm=config.grad_clip, lr_scheduler_type="constant", optim="adamw_torch_fused",
                  logging_first_step=True, logging_steps=max_steps + 1, save_strategy="no", report_to="none",
                  disable_tqdm=True, dataloader_num_workers=0, seed=SEED)

    if row.kind == "sft":
        rows = [{"input_ids": p + r + [EOT_ID], "labels": [-100] * len(p) + r + [EOT_ID]} for p, r in sft_data(row)]
        args = trl.SFTConfig(per_device_train_batch_size=row.size, max_length=None, **common)
        trainer = trl.SFTTrainer(model=hf, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                                 callbacks=list(callbacks))
    elif row.kind == "dpo":
        rows = [{"prompt": text(p).lstrip(), "chosen": text(c), "rejected": text(r)} for p, c, r in dpo_data(row)]
        args = trl.DPOConfig(per_device_train_batch_size=row.size, max_length=None, beta=config.beta,
                             loss_type=[config.loss_type], label_smoothing=config.label_smoothing,
                             precompute_ref_log_probs=row.precompute_ref, **common)
        trainer = trl.DPOTrainer(model=hf, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                                 callbacks=list(callbacks))
    else:  # grpo
        def even_tokens(completions, completion_ids, **kwargs):
            return [reward(ids) for ids in completion_ids]
        B = config.prompts_per_iter * config.group_size
        args = trl.GRPOConfig(per_device_train_batch_size=config.minibatch_size, steps_per_generation=B // config.minibatch_size,
                              num_generations=config.group_size, num_iterations=config.grpo_epochs,
                              max_completion_length=config.max_new_tokens, temperature=config.temperature,
                              beta=config.kl_coef, epsilon=config.clip_low, epsilon_high=config.clip_high,
                              loss_type=config.loss_agg, scale_rewards="group", **common)
        rows = [{"prompt": text(p).lstrip()} for p in prompt_data(row, 16, 72)]
        trainer = trl.GRPOTrainer(model=hf, reward_funcs=even_tokens, args=args, train_dataset=Dataset.from_list(rows),
                                  processing_class=tokenizer, callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)  # it prints every log line
    return trainer


def quiet_libraries():
    """No progress bars, deprecation notes or advice on special tokens from transformers, datasets and TRL (set
    before they are imported): they would bury the table and say nothing about this benchmark."""
    os.environ["TQDM_DISABLE"] = "1"  # tqdm's bars: TRL's reference log-probs
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"  # datasets' own (its maps)
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # ... and transformers' own (it asks huggingface_hub)
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"  # its notes on the saved config's GPT-2 special tokens
    warnings.filterwarnings("ignore", category=FutureWarning)  # TRL 1.16 still passes gradient_checkpointing=


def steps_per_round(row):
    """TRL optimizer steps in one timed unit: 1, or for GRPO the steps of one generation (= ours' minibatches)."""
    if row.kind != "grpo":
        return 1
    config = stage_config(row)
    return config.prompts_per_iter * config.group_size // config.minibatch_size * config.grpo_epochs


def interleaving_callback(ours, warmup, n_steps):
    """A TrainerCallback that times trainer.train() from inside. A round is n_steps of TRL's optimizer steps, from
    on_step_begin of the first to on_step_end of the last; one call of `ours` runs right before the round on even
    rounds and right after it on odd ones (ours TRL, TRL ours, ...: bench_model.interleaved's flipping order). The
    first `warmup` rounds are not kept. After train(): .seconds {'ours': [...], 'trl': [...]}, one per kept round,
    and .first {'ours': its first call's numbers, 'trl': TRL's first logged metrics}."""
    from transformers import TrainerCallback

    class Interleave(TrainerCallback):
        def __init__(self):
            self.seconds, self.first, self.t0 = {"ours": [], "trl": []}, {}, None

        def run_ours(self, r):
            t0 = time.perf_counter()
            out = ours()
            if r >= warmup:
                self.seconds["ours"].append(time.perf_counter() - t0)
            self.first.setdefault("ours", out)

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step % n_steps == 0:  # a round starts
                r = state.global_step // n_steps
                if r % 2 == 0:
                    self.run_ours(r)
                self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % n_steps == 0:  # a round ends (global_step counts this step already)
                r = state.global_step // n_steps - 1
                if r >= warmup:
                    self.seconds["trl"].append(time.perf_counter() - self.t0)
                if r % 2 == 1:
                    self.run_ours(r)

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.first.setdefault("trl", dict(logs))

    return Interleave()


# -----------------------------------------------------------------------------------------------------
# one row: timing both sides in this process, memory in a fresh process per side


def check_line(row, first):
    """The numbers both sides should agree on, side by side."""
    if row.kind == "generate":
        return f"greedy tokens equal to ours: {100 * first['agree']:.0f}%"
    ours, trl = first["ours"], first["trl"]
    if row.kind == "sft":
        return f"first loss: ours {ours['loss']:.5f}, TRL {trl['loss']:.5f}"
    if row.kind == "dpo":
        return (f"first loss: ours {ours['loss']:.5f}, TRL {trl['loss']:.5f}; mean log pi(chosen): ours "
                f"{ours['logps/chosen']:.3f}, TRL {trl['logps/chosen']:.3f}; log pi(rejected): ours "
                f"{ours['logps/rejected']:.3f}, TRL {trl['logps/rejected']:.3f}")
    return (f"first rollout, mean reward: ours {ours['reward']:.2f}, TRL {trl['reward']:.2f}; mean length: ours "
            f"{ours['length']:.1f}, TRL {trl['completions/mean_length']:.1f} tokens (samples differ: equal in "
            f"distribution only)")


def time_row(row, quick):
    """Both sides timed in the same rounds: ({'ours': [s], 'trl': [s]}, the check line)."""
    from bench_model import hf_twin, interleaved
    warmup, repeats = rounds(row, quick)
    model = our_model(row)
    if row.kind == "generate":
        fns = {"ours": generate_fn(row, model), "trl": generate_fn(row, hf_twin(model))}
        seconds, outs = interleaved(fns, repeats, warmup=warmup)
        T0 = 16
        agree = (outs["trl"][:, T0:] == outs["ours"][:, T0:]).float().mean().item()
        return seconds, check_line(row, {"agree": agree})
    n_steps = steps_per_round(row)
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        timer = interleaving_callback(ours_step(row, our_model(row)), warmup, n_steps)
        trl_trainer(row, model, (warmup + repeats) * n_steps, tmp, [timer]).train()
    return timer.seconds, check_line(row, timer.first)


def run_side(row, side):
    """One side of a row alone, for two steps (iterations, generate calls) as in the timing: what peak_rss measures."""
    model = our_model(row)
    if side == "ours":
        fn = generate_fn(row, model) if row.kind == "generate" else ours_step(row, model)
        fn(), fn()
    elif row.kind == "generate":
        from bench_model import hf_twin
        fn = generate_fn(row, hf_twin(model))
        fn(), fn()
    else:
        with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
            trl_trainer(row, model, 2 * steps_per_round(row), tmp).train()


def peak_rss(row, side, threads):
    """Peak resident memory (MiB) of one side of a row, in a fresh process of this script (bench_rl_memory's wrapper:
    a process started from this one would inherit this one's peak)."""
    from bench_rl_memory import peak_rss_mb
    script = os.path.abspath(__file__)
    return peak_rss_mb([sys.executable, script, f"--side={side}", f"--row={row.name}", f"--threads={threads}"])[0]


# -----------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and no memory column: a noisier check")
    parser.add_argument("--rows", default="", help="only these rows, comma-separated: " + ", ".join(r.name for r in ROWS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--side", choices=("ours", "trl"), help="internal: run one side of --row alone (peak_rss)")
    parser.add_argument("--row", help="internal: the row of --side")
    args = parser.parse_args()
    n_cores = len(os.sched_getaffinity(0))
    threads = args.threads or n_cores
    torch.set_num_threads(threads)  # one thread per core: more only makes them fight
    by_name = {r.name: r for r in ROWS}
    quiet_libraries()
    if args.side:
        run_side(by_name[args.row], args.side)
        return

    import transformers
    import trl
    from bench_model import best_ratio, fmt_ratio, paired_ratio, verdict
    unknown = [name for name in args.rows.split(",") if name and name not in by_name]
    if unknown:
        parser.error(f"--rows: unknown {unknown}; expected some of {', '.join(by_name)}")
    rows = [by_name[name] for name in args.rows.split(",")] if args.rows else ROWS
    command = " ".join(["python bench/bench_vs_trl.py"] + sys.argv[1:])
    load = os.getloadavg()[0]
    t_start = time.perf_counter()
    print(f"{command}\ntorch {torch.__version__}, transformers {transformers.__version__}, TRL {trl.__version__}, "
          f"{n_cores} cores, {threads} threads; load average {load:.1f} at the start")

    table = []
    for row in rows:
        t0 = time.perf_counter()
        seconds, check = time_row(row, args.quick)
        ratio = paired_ratio(seconds["trl"], seconds["ours"])
        fastest = best_ratio(seconds["trl"], seconds["ours"])
        # two fresh processes per row cost as much as the timing itself: not in a quick check
        memory = "-" if args.quick else " / ".join(f"{peak_rss(row, side, threads):.0f}" for side in ("trl", "ours"))
        print(f"\n[{row.name}] {row.label}: TRL / ours {fmt_ratio(ratio)}, fastest runs {fastest:.2f}x, "
              f"{verdict(ratio, row.target)}\n  {check}\n  seconds TRL {' '.join(f'{x:.3f}' for x in seconds['trl'])}; "
              f"ours {' '.join(f'{x:.3f}' for x in seconds['ours'])}; peak RSS MiB TRL / ours {memory} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        table.append((row.label, f"{statistics.median(seconds['trl']):.3f}", f"{statistics.median(seconds['ours']):.3f}",
                      fmt_ratio(ratio), f"{fastest:.2f}x", memory, f">= {row.target:.1f}x", verdict(ratio, row.target)))

    minutes = (time.perf_counter() - t_start) / 60
    print(f"\n## A stage step against TRL {trl.__version__} on CPU ({n_cores} cores, {threads} threads, torch "
          f"{torch.__version__}, transformers {transformers.__version__})\n")
    print("| measurement | TRL, s | ours, s | TRL time / ours, median [min-max] | fastest runs "
          "| peak RSS MiB, TRL / ours | target | result |")
    print("| --- | ---: | ---: | --- | --- | --- | --- | --- |")
    for line in table:
        print("| " + " | ".join(line) + " |")
    print("\nRatios > 1: ours is faster; medians [min-max] over rounds that time both sides back to back; seconds: "
          "medians. The generate rows' 'TRL' is transformers' generate (what TRL's GRPOTrainer calls). Peak RSS: each "
          "side alone in a fresh process, imports included" + (" (not measured with --quick)." if args.quick else "."))
    print(f"Command: `{command}` -- took {minutes:.1f} minutes; load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end.")


if __name__ == "__main__":
    main()
