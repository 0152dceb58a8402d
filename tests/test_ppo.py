"""ppo.py: GAE against a slow per-token loop, whitening by hand, the rollout's masks and score position,
the KL penalty, ratio = 1 on the first minibatch, the KL controller, and smoke runs (1 process and DDP)."""

import copy
import json
import math
import sys

import pytest
import torch

from model import GPT, GPTConfig
from ppo import (AdaptiveKLController, PolicyAndValue, compute_gae, explained_variance, kl_penalized_rewards,
                 masked_whiten, policy_loss, ppo_update, response_logprobs, response_mask, rollout)
from runtime import setup_runtime
from tokenizer import CharTokenizer

from conftest import run_stage, tiny_sft_checkpoint, write_records


# ------------------------------------------------------------------------------------------------
# GAE and whitening against references written here

def gae_slow(rewards, values, lengths, gamma, lam):
    """Per row, per token, straight from the definition: A_t = sum_l (gamma lam)^l delta_{t+l},
    delta_t = r_t + gamma V_{t+1} - V_t with V after the last real token = 0."""
    B, T = len(rewards), len(rewards[0])
    adv = [[0.0] * T for _ in range(B)]
    for b in range(B):
        n = lengths[b]
        for t in range(n):
            total = 0.0
            for l in range(n - t):
                v_next = values[b][t + l + 1] if t + l + 1 < n else 0.0
                delta = rewards[b][t + l] + gamma * v_next - values[b][t + l]
                total += (gamma * lam) ** l * delta
            adv[b][t] = total
    ret = [[adv[b][t] + values[b][t] if t < lengths[b] else 0.0 for t in range(T)] for b in range(B)]
    return adv, ret


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 1.0), (0.9, 0.0), (1.0, 1.0)])
def test_gae_matches_per_token_loop_on_ragged_padded_batch(gamma, lam):
    torch.manual_seed(0)
    lengths = [5, 1, 3, 7]
    T = 7
    mask = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths])
    rewards = torch.randn(4, T) * mask + (1 - mask) * 99.0  # garbage on padding must not leak in
    values = torch.randn(4, T) * mask + (1 - mask) * -42.0
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    ref_adv, ref_ret = gae_slow(rewards.tolist(), values.tolist(), lengths, gamma, lam)
    assert torch.allclose(adv, torch.tensor(ref_adv), atol=1e-5)
    assert torch.allclose(ret, torch.tensor(ref_ret), atol=1e-5)
    assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()


def test_gae_lambda_one_gamma_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.25, 0.75]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 1.0]]))  # the Monte-Carlo return everywhere
    assert torch.allclose(adv, torch.tensor([[0.5, 0.75, 0.25]]))


def test_masked_whiten_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # mean 2, biased variance ((1)^2 + 0 + (1)^2) / 3 = 2/3, so (x - 2) / sqrt(2/3) = +-1.2247449
    s = 1 / math.sqrt(2 / 3)
    assert torch.allclose(masked_whiten(x, mask), torch.tensor([[-s, 0.0, s, 0.0]]), atol=1e-5)
    assert torch.allclose(masked_whiten(x, mask, shift_mean=False), torch.tensor([[2 - s, 2.0, 2 + s, 0.0]]), atol=1e-5)


def test_response_mask_and_rewards_land_on_the_last_real_token():
    eos = 1
    tokens = torch.tensor([[5, 6, eos, 0, 0], [7, eos, 0, 0, 0], [5, 5, 5, 5, 5]])
    mask, ended = response_mask(tokens, eos)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert ended.tolist() == [True, True, False]
    logp = torch.full((3, 5), -1.0)
    ref_logp = torch.full((3, 5), -1.5)
    rewards, kl = kl_penalized_rewards(logp, ref_logp, torch.tensor([2.0, -1.0, 0.5]), mask, kl_coef=0.1)
    # kl_t = -1 - (-1.5) = 0.5 on real tokens, so -beta * kl = -0.05; the score on the last real one
    assert torch.allclose(rewards, torch.tensor([[-0.05, -0.05, 1.95, 0, 0], [-0.05, -1.05, 0, 0, 0],
                                                 [-0.05, -0.05, -0.05, -0.05, 0.45]]))
    assert torch.allclose(kl.sum(1), torch.tensor([1.5, 1.0, 2.5]))


def test_adaptive_kl_controller_by_hand():
    ctl = AdaptiveKLController(0.1, target_kl=6.0, horizon=10000)
    ctl.update(current_kl=9.0, n_rollouts=100)  # error clip(9/6 - 1) = 0.2 -> beta * (1 + 0.2 * 0.01)
    assert math.isclose(ctl.kl_coef, 0.1 * 1.002)
    ctl.update(current_kl=5.4, n_rollouts=100)  # error -0.1
    assert math.isclose(ctl.kl_coef, 0.1 * 1.002 * 0.999)


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert explained_variance(torch.full_like(returns, 2.0), returns, mask).item() == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------------
# rollouts with tiny models

VOCAB = 12


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=32, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=16)
    policy = GPT(cfg).eval()
    reward = GPT(GPTConfig(**{**cfg.__dict__, "scalar_head": True})).eval()
    value = copy.deepcopy(reward)
    return policy, reward, value


def tiny_rollout(models, ref=None, max_new_tokens=6):
    policy, reward, value = models
    tok = CharTokenizer("abcdefghij")  # VOCAB ids: pad 0, end-of-text 1
    rt = setup_runtime("cpu", "float32", seed=3)
    prompts = [[3, 4, 5], [6, 7], [8, 9, 10, 11, 4]]
    batch = rollout(policy, ref if ref is not None else copy.deepcopy(policy), value, reward, prompts, tok,
                    max_new_tokens=max_new_tokens, temperature=1.0, missing_eos_penalty=1.0, rt=rt)
    return batch, prompts


def test_rollout_masks_after_end_of_text_and_scores_the_last_real_token(models):
    batch, prompts = tiny_rollout(models, max_new_tokens=12)
    T0, tokens, mask = batch["T0"], batch["tokens"], batch["mask"]
    reward = models[1]
    for b, p in enumerate(prompts):
        n = int(mask[b].sum())
        response = tokens[b, T0:T0 + n].tolist()
        assert (1 in response) == bool(batch["ended"][b]) and (1 not in response[:-1])
        assert (batch["logp"][b, n:] == 0).all() and (batch["values"][b, n:] == 0).all()
        # the score is the reward model on the unpadded prompt + response, read at its last token
        alone = torch.tensor([p + response])
        with torch.no_grad():
            assert torch.allclose(batch["raw_scores"][b], reward.score(alone)[0, -1], atol=1e-5)
        expected = batch["raw_scores"][b] - (0.0 if batch["ended"][b] else 1.0)
        assert torch.allclose(batch["scores"][b], expected)


def test_kl_penalty_is_zero_when_policy_is_the_reference(models):
    batch, _ = tiny_rollout(models)
    rewards, kl = kl_penalized_rewards(batch["logp"], batch["ref_logp"], batch["scores"], batch["mask"], kl_coef=0.3)
    assert (kl == 0).all()
    last = batch["mask"].sum(1).long() - 1
    assert torch.equal(rewards.sum(1), batch["scores"]) and torch.equal(rewards[torch.arange(3), last], batch["scores"])


def test_first_minibatch_has_ratio_one_no_kl_no_clipping(models):
    batch, _ = tiny_rollout(models)
    policy, _, value = models
    pv = PolicyAndValue(policy, value)
    mb = torch.tensor([2, 0])  # a minibatch in shuffled order
    with torch.no_grad():
        logits, _ = pv(batch["tokens"][mb], batch["attention_mask"][mb])
    logp = response_logprobs(logits, batch["tokens"][mb], batch["T0"], 1.0)
    advantages = torch.randn(2, logp.shape[1])
    _, approx_kl, clipfrac = policy_loss(logp, batch["logp"][mb], advantages, batch["mask"][mb], clip_coef=0.2)
    ratio = torch.exp(logp - batch["logp"][mb]) * batch["mask"][mb]
    assert torch.allclose(ratio, batch["mask"][mb], atol=1e-5)
    assert abs(approx_kl.item()) < 1e-7 and clipfrac.item() == 0.0


def test_ppo_update_is_one_gradient_step_on_the_two_losses(models):
    """One epoch, one minibatch holding the whole batch, plain SGD with lr 1: the weights move by exactly
    -grad of  -mean_t(A_t log pi(a_t|s_t)) + vf_coef * 1/2 mean_t (V(s_t) - R_t)^2  over the response tokens
    -- what the clipped losses are at the first minibatch, where ratio = 1 and V = V_old -- computed here
    from a plain log_softmax of the logits that predict each response token."""
    batch, _ = tiny_rollout(models)
    policy, _, value = models
    pv = PolicyAndValue(copy.deepcopy(policy), copy.deepcopy(value))
    before = [p.detach().clone() for p in pv.parameters()]
    torch.manual_seed(0)
    mask, T0, tokens = batch["mask"], batch["T0"], batch["tokens"]
    advantages, returns = torch.randn(mask.shape) * mask, torch.randn(mask.shape) * mask
    rt = setup_runtime("cpu", "float32", seed=0)
    metrics = ppo_update(pv, torch.optim.SGD(pv.parameters(), lr=1.0), batch, advantages, returns, ppo_epochs=1,
                         minibatch_size=len(tokens), clip_coef=0.2, clip_coef_vf=0.2, vf_coef=0.5, ent_coef=0.0,
                         temperature=1.0, grad_clip=0.0, generator=torch.Generator().manual_seed(0), rt=rt)
    assert set(metrics) == {"ppo/loss/policy", "ppo/loss/value", "ppo/approx_kl", "ppo/clipfrac", "ppo/val/clipfrac",
                            "objective/entropy", "ppo/grad_norm"}
    assert abs(metrics["ppo/approx_kl"].item()) < 1e-6 and metrics["ppo/clipfrac"].item() == 0.0

    ref = PolicyAndValue(copy.deepcopy(policy), copy.deepcopy(value))
    logits, values = ref(tokens, batch["attention_mask"])
    n = mask.sum()
    logp = torch.stack([torch.log_softmax(logits[:, t - 1], dim=-1).gather(1, tokens[:, t:t + 1]).squeeze(1)
                        for t in range(T0, tokens.shape[1])], dim=1)  # (B, T): position t - 1 predicts token t
    v = values[:, T0 - 1:-1]  # V(s_t) is read where a_t is predicted
    loss = -(advantages * logp * mask).sum() / n + 0.5 * 0.5 * (((v - returns) ** 2) * mask).sum() / n
    loss.backward()
    for p0, p1, p_ref in zip(before, pv.parameters(), ref.parameters()):
        expected = p0 - (p_ref.grad if p_ref.grad is not None else 0)
        assert torch.allclose(p1.detach(), expected, atol=1e-5)


def test_policy_loss_by_hand():
    # A = +1 and ratio 1.5 with eps 0.2: min(1.5, 1.2) * 1 = 1.2 -> loss -1.2, clipped
    # A = -1 and ratio 0.5: min(-0.5, -0.8) = -0.8 -> loss 0.8, clipped
    logp = torch.log(torch.tensor([[1.5, 0.5]]))
    loss, approx_kl, clipfrac = policy_loss(logp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2), 0.2)
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert clipfrac.item() == 1.0
    assert approx_kl.item() == pytest.approx(((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2)


# ------------------------------------------------------------------------------------------------
# smoke runs

@pytest.fixture(scope="module")
def tiny_stage_dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_ppo")
    words = ["apple", "pear", "plum", "fig"]
    write_records(d / "prompts.jsonl", [{"prompt": f"say {w}"} for w in words * 2])
    tiny_sft_checkpoint(d, [f"say {w}" for w in words], scalar_head_dir="rm")
    return d


def ppo_args(d, out, **overrides):
    args = dict(sft_dir=d / "sft", reward_dir=d / "rm", prompts=d / "prompts.jsonl", out_dir=out, batch_size=4,
                minibatch_size=2, ppo_epochs=2, max_iters=2, max_new_tokens=8, eval_interval=2, sample_interval=1,
                learning_rate=1e-3, device="cpu", dtype="float32")
    return {**args, **overrides}


def test_smoke_run(tiny_stage_dirs, tmp_path):
    result = run_stage("ppo.py", ppo_args(tiny_stage_dirs, tmp_path / "ppo"))
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in open(tmp_path / "ppo" / "metrics.jsonl")]
    for key in ("env/reward_mean", "objective/kl", "ppo/approx_kl", "ppo/clipfrac", "ppo/explained_variance", "response/length"):
        assert key in records[0]
    assert (tmp_path / "ppo" / "ckpt.pt").exists() and (tmp_path / "ppo" / "samples.txt").exists()


def test_ddp_smoke_run_with_two_gloo_processes(tiny_stage_dirs, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = run_stage("ppo.py", ppo_args(tiny_stage_dirs, tmp_path / "ppo_ddp", batch_size=2), launcher=torchrun)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "ppo_ddp" / "ckpt.pt").exists()


def metric_lines(out_dir):
    """metrics.jsonl without its wall-clock fields, which differ between any two runs."""
    return [{k: v for k, v in r.items() if k != "time" and not k.startswith("perf/")}
            for r in map(json.loads, open(out_dir / "metrics.jsonl"))]


def test_resume_is_bitwise_exact(tiny_stage_dirs, tmp_path):
    """4 iterations in one go == 2, then --resume=True for 2 more: the same policy and value weights, optimizer
    state, adaptive KL coefficient and logged metrics. Sampling draws from the global RNG, so its state must be
    restored too."""
    args = dict(max_iters=4, adaptive_kl=True, kl_horizon=10)
    assert run_stage("ppo.py", ppo_args(tiny_stage_dirs, tmp_path / "full", **args)).returncode == 0
    half = ppo_args(tiny_stage_dirs, tmp_path / "half", **{**args, "max_iters": 2})
    assert run_stage("ppo.py", half).returncode == 0
    result = run_stage("ppo.py", {**half, "max_iters": 4, "resume": True})
    assert result.returncode == 0, result.stderr
    full, resumed = (torch.load(tmp_path / name / "ckpt.pt", weights_only=True) for name in ("full", "half"))
    assert full["step"] == resumed["step"] == 4 and full["kl_coef"] == resumed["kl_coef"] != 0.05
    for part in ("model", "value_model"):
        for k, v in full[part].items():
            assert torch.equal(v, resumed[part][k]), (part, k)
    assert metric_lines(tmp_path / "full") == metric_lines(tmp_path / "half")
