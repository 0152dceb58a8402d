"""
bench_rl_iteration.py -- where one PPO iteration and one GRPO iteration spend their time on the toy world:
generation, the scoring forwards, the update.

    python bench/bench_rl_iteration.py out/demo-...      # a finished scripts/demo.sh run (its data, sft, reward)
    python bench/bench_rl_iteration.py out/demo-... --iters 3 --threads 1

Each iteration is the stage's own code, with the settings of config/ppo_toy.py and config/grpo_toy.py (64
responses of at most 48 tokens; PPO 4 epochs of minibatch 16, GRPO 1 epoch of minibatch 16):
- generate: policy.generate inside ppo.rollout (KV-cache sampling; timed by wrapping the method);
- scoring forwards: the rest of ppo.rollout -- the policy's and the reference's log-probs, the value model
  (PPO only) and the reward model, each one forward over the prompt and response;
- rewards + advantages: PPO's KL-penalised rewards and GAE with whitening; GRPO's group advantages;
- update: ppo.ppo_update / grpo.grpo_update (forwards, backwards, AdamW steps).
The stages' logging, periodic evaluation and checkpoints are not included (they run every 10 iterations).
Prompts are drawn as the stages draw them (iterations 1, 2, ...); one untimed warm-up iteration first; the
median over --iters iterations per phase is printed, and the fraction of the iteration it is.
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
import grpo  # noqa: E402
import ppo  # noqa: E402
from configurator import parse_config  # noqa: E402
from data.batches import tokenize_prompts  # noqa: E402
from data.formats import load_prompts  # noqa: E402
from optim import configure_adamw  # noqa: E402
from runtime import batch_indices, setup_runtime  # noqa: E402

PHASES = ("generate", "scoring forwards", "rewards + advantages", "update")


def timed_generate(model, seconds):
    """Make model.generate add its wall time to seconds["generate"] (an instance attribute over the method)."""
    generate = model.generate

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = generate(*args, **kwargs)
        seconds["generate"] += time.perf_counter() - t0
        return out
    model.generate = wrapper


def ppo_iteration(models, optimizer, prompt_ids, tok, config, it, rt, seconds):
    policy, ref_model, value_model, reward_model, model = models
    ids = batch_indices(len(prompt_ids), config.batch_size, config.seed, it)
    t0 = time.perf_counter()
    policy.eval()
    batch = ppo.rollout(policy, ref_model, value_model, reward_model, [prompt_ids[i] for i in ids], tok,
                        config.max_new_tokens, config.temperature, config.missing_eos_penalty, rt)
    policy.train()
    t1 = time.perf_counter()
    rewards, _ = ppo.kl_penalized_rewards(batch["logp"], batch["ref_logp"], batch["scores"], batch["mask"], config.kl_coef)
    advantages, returns = ppo.compute_gae(rewards, batch["values"], batch["mask"], config.gamma, config.lam)
    advantages = ppo.masked_whiten(advantages, batch["mask"])
    t2 = time.perf_counter()
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + it * 101)
    ppo.ppo_update(model, optimizer, batch, advantages, returns, config.ppo_epochs, config.minibatch_size,
                   config.clip_coef, config.clip_coef_vf, config.vf_coef, config.ent_coef, config.temperature,
                   config.grad_clip, g, rt)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, batch["mask"].sum(1).float().mean().item()


def grpo_iteration(models, optimizer, prompt_ids, tok, config, it, rt, seconds):
    policy, ref_model, reward_model = models
    ids, group = grpo.rank_groups(len(prompt_ids), config.prompts_per_iter, config.group_size, config.seed, it, 0, 1)
    t0 = time.perf_counter()
    policy.eval()
    batch = ppo.rollout(policy, ref_model, None, reward_model, [prompt_ids[i] for i in ids], tok, config.max_new_tokens,
                        config.temperature, config.missing_eos_penalty, rt)
    policy.train()
    t1 = time.perf_counter()
    rewards = grpo.response_rewards(config.reward, batch["scores"], None, rt.device)
    advantages = grpo.group_advantages(rewards, group, config.advantage, config.adv_eps)
    t2 = time.perf_counter()
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + it * 101)
    grpo.grpo_update(policy, optimizer, batch, advantages, config, g, rt)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, batch["mask"].sum(1).float().mean().item()


def bench(name, iteration, models, optimizer, prompt_ids, tok, config, rt, iters):
    seconds = {"generate": 0.0}
    timed_generate(models[0], seconds)
    per_phase = {p: [] for p in PHASES}
    lengths = []
    for it in range(1, iters + 2):
        seconds["generate"] = 0.0
        rollout_s, adv_s, update_s, length = iteration(models, optimizer, prompt_ids, tok, config, it, rt, seconds)
        if it == 1:
            continue  # warm-up
        for phase, s in zip(PHASES, (seconds["generate"], rollout_s - seconds["generate"], adv_s, update_s)):
            per_phase[phase].append(s)
        lengths.append(length)
    medians = {p: statistics.median(v) for p, v in per_phase.items()}
    total = sum(medians.values())
    print(f"\n[{name}] one iteration: {total:.2f} s (median of {iters}; mean response length "
          f"{statistics.mean(lengths):.1f} tokens)")
    for phase in PHASES:
        print(f"  {phase:22s} {medians[phase]:6.3f} s  {100 * medians[phase] / total:4.0f}%  "
              f"[{min(per_phase[phase]):.3f}-{max(per_phase[phase]):.3f}]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("demo_dir", help="a finished run of scripts/demo.sh (or any dir with data/, sft/, reward/)")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per stage, after one warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    d = os.path.abspath(args.demo_dir)
    common = [f"--sft_dir={d}/sft", f"--reward_dir={d}/reward", f"--prompts={d}/data/rl_prompts.jsonl"]
    print(f"python bench/bench_rl_iteration.py {' '.join(sys.argv[1:])}\ntorch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at the start")

    config = parse_config(ppo.PPOConfig, ["--config", "config/ppo_toy.py", *common], ranges=ppo.RANGES)
    rt = setup_runtime(config.device, config.dtype, config.seed)
    policy, ref_model, value_model, reward_model, tok = ppo.load_models(config.sft_dir, config.reward_dir, config.value_init)
    for m in (ref_model, reward_model):
        m.eval().requires_grad_(False)
    model = ppo.PolicyAndValue(policy, value_model)
    optimizer = configure_adamw(model, config.learning_rate, config.weight_decay, (config.beta1, config.beta2), "cpu")
    _, prompt_ids, _ = tokenize_prompts(load_prompts(config.prompts), tok, policy.config.block_size, config.max_new_tokens,
                                        config.prompts, True)
    bench("PPO, config/ppo_toy.py", ppo_iteration, (policy, ref_model, value_model, reward_model, model), optimizer,
          prompt_ids, tok, config, rt, args.iters)

    config = parse_config(grpo.GRPOConfig, ["--config", "config/grpo_toy.py", *common], ranges=grpo.RANGES)
    rt = setup_runtime(config.device, config.dtype, config.seed)
    policy, ref_model, _, reward_model, tok = ppo.load_models(config.sft_dir, config.reward_dir, "reward")
    for m in (ref_model, reward_model):
        m.eval().requires_grad_(False)
    optimizer = configure_adamw(policy, config.learning_rate, config.weight_decay, (config.beta1, config.beta2), "cpu")
    bench("GRPO, config/grpo_toy.py (reward model)", grpo_iteration, (policy, ref_model, reward_model), optimizer,
          prompt_ids, tok, config, rt, args.iters)


if __name__ == "__main__":
    main()
