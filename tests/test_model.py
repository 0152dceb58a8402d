"""model.py against Hugging Face transformers' GPT-2 (the reference implementation), and the sampler's
KV cache against plain recomputation."""

import os

import pytest
import torch
from torch.nn import functional as F

from model import GPT, GPTConfig, sample_next_token, token_logprobs

transformers = pytest.importorskip("transformers")

TINY = dict(n_positions=64, n_embd=32, n_layer=2, n_head=4, vocab_size=101)


def hf_tiny_model(seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(**TINY, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def hf_and_ours(tmp_path_factory):
    hf = hf_tiny_model()
    path = tmp_path_factory.mktemp("hf_tiny")
    hf.save_pretrained(path)
    ours = GPT.from_pretrained(str(path)).eval()
    return hf, ours, path


def left_pad(rows, pad_id=0):
    """rows: list of 1-D LongTensors -> (idx (B, T), attention_mask (B, T)), padded on the left."""
    T = max(len(r) for r in rows)
    idx = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        idx[i, T - len(r):] = r
        mask[i, T - len(r):] = 1
    return idx, mask


def test_logits_match_hf_unpadded(hf_and_ours):
    hf, ours, _ = hf_and_ours
    idx = torch.randint(0, TINY["vocab_size"], (3, 17))
    with torch.no_grad():
        ref = hf(idx).logits
        logits, _ = ours(idx)
    assert logits.shape == (3, 17, TINY["vocab_size"])
    assert (logits - ref).abs().max().item() <= 1e-4


def test_logits_match_hf_left_padded(hf_and_ours):
    hf, ours, _ = hf_and_ours
    rows = [torch.randint(0, TINY["vocab_size"], (n,)) for n in (9, 4, 13)]
    idx, mask = left_pad(rows, pad_id=7)
    with torch.no_grad():
        logits, _ = ours(idx, attention_mask=mask)
        for i, r in enumerate(rows):
            ref = hf(r[None]).logits[0]  # the row alone, unpadded
            assert (logits[i, -len(r):] - ref).abs().max().item() <= 1e-4


def test_loss_matches_hf_with_ignored_targets(hf_and_ours):
    hf, ours, _ = hf_and_ours
    idx = torch.randint(0, TINY["vocab_size"], (2, 12))
    labels = idx.clone()
    labels[:, :5] = -100
    with torch.no_grad():
        ref = hf(idx, labels=labels).loss  # HF shifts labels inside; we pass already-shifted targets
        targets = torch.cat([labels[:, 1:], torch.full((2, 1), -100)], dim=1)
        _, loss = ours(idx, targets=targets)
    assert abs(loss.item() - ref.item()) <= 1e-5


def test_greedy_generation_matches_hf_generate(hf_and_ours):
    # transformers' generate() is the reference sampler: the same greedy tokens, one batch of unpadded prompts
    # (our decode steps then run without a mask) and one left-padded batch (with the padding mask)
    hf, ours, _ = hf_and_ours
    torch.manual_seed(5)
    unpadded = torch.randint(1, TINY["vocab_size"], (3, 6))
    idx, mask = left_pad([torch.randint(1, TINY["vocab_size"], (n,)) for n in (9, 4, 13)], pad_id=0)
    one = unpadded[:1]  # one prompt on the CPU: decoded with the widening weights stored (in, out)
    for prompts, attention_mask in ((unpadded, torch.ones_like(unpadded)), (idx, mask), (one, torch.ones_like(one))):
        ref = hf.generate(prompts, attention_mask=attention_mask, max_new_tokens=20, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
        out = ours.generate(prompts, 20, temperature=0, attention_mask=attention_mask)
        assert torch.equal(out, ref)


def test_save_pretrained_opens_in_hf(tmp_path):
    torch.manual_seed(1)
    ours = GPT(GPTConfig(block_size=64, vocab_size=101, n_layer=2, n_head=4, n_embd=32)).eval()
    ours.save_pretrained(str(tmp_path))
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path)).eval()
    idx = torch.randint(0, 101, (2, 20))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() <= 1e-4


def test_pytorch_model_bin_loads(tmp_path):
    """An old-style checkpoint: pytorch_model.bin, keys without the 'transformer.' prefix, the attention
    mask buffers saved beside the weights (as OpenAI's original gpt2 upload has them)."""
    hf = hf_tiny_model(seed=2)
    hf.config.save_pretrained(tmp_path)
    sd = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}
    for i in range(TINY["n_layer"]):
        sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(64, 64))[None, None]
        sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    ours = GPT.from_pretrained(str(tmp_path)).eval()
    idx = torch.randint(0, 101, (1, 10))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() <= 1e-4


def test_download_path_against_local_endpoint(tmp_path, monkeypatch, hf_and_ours):
    """from_pretrained('gpt2') runs the real download code, pointed at a file:// endpoint laid out like the hub."""
    _, ours_ref, src = hf_and_ours
    hub = tmp_path / "hub" / "openai-community" / "gpt2" / "resolve" / "main"
    hub.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (hub / name).write_bytes((src / name).read_bytes())
    monkeypatch.setenv("HF_ENDPOINT", (tmp_path / "hub").as_uri())
    cache = tmp_path / "cache"
    model = GPT.from_pretrained("gpt2", cache_dir=str(cache)).eval()
    assert sorted(os.listdir(cache / "gpt2")) == ["config.json", "model.safetensors"]  # no temp files left
    idx = torch.randint(0, 101, (1, 8))
    with torch.no_grad():
        assert torch.equal(model(idx)[0], ours_ref(idx)[0])
    # a second call uses the cache, even with the endpoint gone
    monkeypatch.setenv("HF_ENDPOINT", (tmp_path / "nowhere").as_uri())
    GPT.from_pretrained("gpt2", cache_dir=str(cache))


def test_bad_inputs_give_clear_errors(tmp_path, hf_and_ours):
    _, _, src = hf_and_ours
    with pytest.raises(ValueError, match="no model.safetensors or pytorch_model.bin"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.json").write_text((src / "config.json").read_text())
        GPT.from_pretrained(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="unknown model 'gpt3'"):
        GPT.from_pretrained("gpt3")
    # a checkpoint whose shapes do not match its config: the error names the key
    import json
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((src / "config.json").read_text())
    config["vocab_size"] = 120
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"key 'wte.weight' has shape \(101, 32\), the model expects \(120, 32\)"):
        GPT.from_pretrained(str(bad))
    del config["n_head"]  # a config.json without a size it needs: the file and the key, not a KeyError
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"bad/config.json: no integer 'n_head'; a GPT-2 config needs"):
        GPT.from_pretrained(str(bad))
    wrong = GPT(GPTConfig(block_size=64, vocab_size=101, n_layer=2, n_head=4, n_embd=32))
    sd = dict(hf_tiny_model().state_dict())
    del sd["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(ValueError, match=r"missing key 'h.1.mlp.c_fc.bias'"):
        wrong.load_hf_state_dict(sd)
    with pytest.raises(ValueError, match="longer than block_size 64"):
        wrong.generate(torch.zeros(1, 60, dtype=torch.long), max_new_tokens=5)
    with pytest.raises(ValueError, match="longer than block_size 64"):
        wrong(torch.zeros(1, 65, dtype=torch.long))


# ------------------------------------------------------------------------------------------------
# sampling with the KV cache

def greedy_without_cache(model, prompt, n):
    """The obviously-correct reference: recompute the whole sequence for every new token."""
    idx = prompt[None]
    for _ in range(n):
        logits, _ = model(idx)
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx[0]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=64, vocab_size=50, n_layer=2, n_head=4, n_embd=32)).eval()


def test_kv_cache_greedy_equals_recomputation(tiny_model):
    prompt = torch.randint(0, 50, (7,))
    out = tiny_model.generate(prompt[None], max_new_tokens=20, temperature=0)
    assert torch.equal(out[0], greedy_without_cache(tiny_model, prompt, 20))


def test_left_padded_batch_equals_each_row_alone(tiny_model):
    prompts = [torch.randint(2, 50, (n,)) for n in (3, 11, 6)]
    idx, mask = left_pad(prompts, pad_id=0)
    out = tiny_model.generate(idx, max_new_tokens=15, temperature=0, attention_mask=mask)
    for i, p in enumerate(prompts):
        alone = greedy_without_cache(tiny_model, p, 15)
        assert torch.equal(out[i, idx.shape[1]:], alone[len(p):])


def test_eos_stops_rows_and_pads_after(tiny_model):
    prompts = torch.randint(2, 50, (16, 5), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    free = tiny_model.generate(prompts, max_new_tokens=30, temperature=1.0)[:, 5:]
    eos = torch.bincount(free.flatten()).argmax().item()  # the most frequent token plays end-of-text
    torch.manual_seed(3)  # the same random stream: rows agree up to and including their first EOS
    out = tiny_model.generate(prompts, max_new_tokens=30, temperature=1.0, eos_token_id=eos, pad_token_id=0)[:, 5:]
    n_ended = 0
    for free_row, row in zip(free, out):
        hits = (free_row == eos).nonzero()
        if len(hits):
            k = hits[0, 0].item()
            n_ended += 1
            assert torch.equal(row[:k + 1], free_row[:k + 1]) and (row[k + 1:] == 0).all()
        else:
            assert torch.equal(row, free_row)
    assert n_ended > 0

    # the whole batch stops as soon as every row has ended: a model that always says token 1
    always_eos = GPT(GPTConfig(block_size=64, vocab_size=50, n_layer=1, n_head=1, n_embd=8))
    with torch.no_grad():
        always_eos.transformer.ln_f.weight.zero_()
        always_eos.transformer.ln_f.bias.fill_(10.0)  # every hidden state is all 10s
        always_eos.lm_head.weight.zero_()
        always_eos.lm_head.weight[1] = 1.0  # so token 1's logit is 80 and every other is 0
    out = always_eos.generate(prompts[:3], max_new_tokens=10, eos_token_id=1, temperature=1.0)
    assert out.shape == (3, 6) and (out[:, 5] == 1).all()


def test_sampled_logprobs_match_recomputation(tiny_model):
    torch.manual_seed(4)
    prompts = [torch.randint(2, 50, (n,)) for n in (4, 9)]
    idx, mask = left_pad(prompts)
    out, logprobs = tiny_model.generate(idx, max_new_tokens=12, temperature=0.7, attention_mask=mask,
                                        return_logprobs=True)
    full_mask = torch.cat([mask, torch.ones(2, 12, dtype=torch.long)], dim=1)
    with torch.no_grad():
        logits, _ = tiny_model(out, attention_mask=full_mask)
    T0 = idx.shape[1]
    ref = torch.log_softmax(logits[:, T0 - 1:-1] / 0.7, dim=-1).gather(-1, out[:, T0:, None]).squeeze(-1)
    assert torch.allclose(logprobs, ref, atol=1e-5)


def test_generated_tensors_are_ordinary_tensors(tiny_model):
    # generate() runs in inference mode; what it returns must still work in autograd and take in-place edits,
    # as PPO does with the tokens (gather saves them for backward) and a learner might
    out, logprobs = tiny_model.generate(torch.randint(0, 50, (2, 4)), 5, temperature=1.0, return_logprobs=True)
    assert not out.is_inference() and not logprobs.is_inference()
    logits, _ = tiny_model(out)
    token_logprobs(logits[:, :-1], out[:, 1:]).sum().backward()
    out[:, -1] = 0
    logprobs += 1


def test_batch_one_decoding_gives_the_weights_back(tiny_model):
    # at one prompt on the CPU generate() runs inside widening_weights_stored_in_out, which swaps the storage of the
    # widening weights for a transposed copy: the same values, still tied, and afterwards the model's own tensors
    # again -- after an error too
    params = dict(tiny_model.named_parameters())
    before = {name: (p.data_ptr(), p.stride()) for name, p in params.items()}
    values = {name: p.detach().clone() for name, p in params.items()}
    head_values = tiny_model.lm_head.weight.detach().clone()
    with tiny_model.widening_weights_stored_in_out(True):
        head = tiny_model.lm_head.weight
        assert head.shape == (50, 32) and head.t().is_contiguous() and torch.equal(head, head_values)
        assert tiny_model.transformer.wte.weight is head
        assert tiny_model.transformer.h[0].mlp.c_fc.weight.t().is_contiguous()
        assert tiny_model.transformer.h[0].mlp.c_proj.weight.is_contiguous()  # narrowing (out < in): left alone
    prompt = torch.randint(0, 50, (5,))
    assert torch.equal(tiny_model.generate(prompt[None], 12, temperature=0)[0], greedy_without_cache(tiny_model, prompt, 12))
    with pytest.raises(RuntimeError, match="stopped"):
        with tiny_model.widening_weights_stored_in_out(True):
            raise RuntimeError("stopped in the middle of a generation")
    assert {name: (p.data_ptr(), p.stride()) for name, p in tiny_model.named_parameters()} == before
    assert all(torch.equal(p, values[name]) for name, p in tiny_model.named_parameters())


def test_sampling_without_the_logprob_draws_the_same_tokens():
    # generate() skips the log-softmax unless return_logprobs: the tokens (and the random stream) must not change
    logits = torch.randn(4, 30, generator=torch.Generator().manual_seed(1))
    for temperature, top_k, top_p in ((0, None, None), (0.7, None, None), (1.0, 5, 0.9)):
        torch.manual_seed(0)
        with_logprob, logprob = sample_next_token(logits, temperature, top_k, top_p)
        after_with = torch.rand(3)  # where the random stream stands after the draw
        torch.manual_seed(0)
        without, nothing = sample_next_token(logits, temperature, top_k, top_p, with_logprob=False)
        assert torch.equal(with_logprob, without) and torch.equal(torch.rand(3), after_with)
        assert nothing is None and logprob.shape == (4,)


def test_token_logprobs_against_log_softmax():
    logits = torch.randn(2, 5, 11)
    tokens = torch.randint(0, 11, (2, 5))
    for tau in (1.0, 0.5):
        ref = F.log_softmax(logits / tau, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)
        assert torch.allclose(token_logprobs(logits, tokens, temperature=tau), ref, atol=1e-6)


def test_top_k_1_and_tiny_top_p_are_greedy(tiny_model):
    prompt = torch.randint(2, 50, (1, 6))
    greedy = tiny_model.generate(prompt, 10, temperature=0)
    assert torch.equal(tiny_model.generate(prompt, 10, temperature=1.0, top_k=1), greedy)
    assert torch.equal(tiny_model.generate(prompt, 10, temperature=1.0, top_p=1e-6), greedy)


def test_scalar_head_reads_hidden_states(tiny_model):
    idx = torch.randint(0, 50, (2, 9))
    model = GPT(GPTConfig(block_size=64, vocab_size=50, n_layer=2, n_head=4, n_embd=32, scalar_head=True)).eval()
    with torch.no_grad():
        h = model.hidden_states(idx)
        assert h.shape == (2, 9, 32)
        assert torch.allclose(model.score(idx), h @ model.score_head.weight[0] + model.score_head.bias)
    with pytest.raises(ValueError, match="no scalar head"):
        tiny_model.score(idx)


# ------------------------------------------------------------------------------------------------
# top-k / top-p: the kept set against transformers' logits processors and a hand-written loop

def kept_by_hand(probs, top_k, top_p):
    """The set of token ids sampling may return: the top_k most likely (ties kept), then, renormalised, the
    most likely tokens one by one until their probability reaches top_p (always at least one)."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    if top_k:
        kth = probs[order[top_k - 1]]
        order = [i for i in order if probs[i] >= kth]
    total = sum(probs[i] for i in order)
    kept, mass = [], 0.0
    for i in order:
        if kept and top_p is not None and mass >= top_p:
            break
        kept.append(i)
        mass += probs[i] / total
    return set(kept)


@pytest.mark.parametrize("top_k,top_p", [(None, 0.0), (None, 0.3), (None, 0.9), (5, None), (0, None), (0, 0.5),
                                         (7, 0.6), (1, None), (None, 1.0)])
def test_filter_logits_keeps_the_reference_set(top_k, top_p):
    from model import filter_logits
    torch.manual_seed(0)
    logits = torch.randn(4, 30) * 2
    filtered = filter_logits(logits, top_k, top_p)
    for row, out in zip(logits, filtered):
        kept = set(torch.nonzero(torch.isfinite(out)).flatten().tolist())
        assert kept == kept_by_hand(row.softmax(-1).tolist(), top_k, top_p)
        assert torch.equal(out[list(kept)], row[list(kept)])  # the kept logits are untouched
    # transformers: TopK / TopP processors (0 and None mean "off" for top_k there too)
    scores = logits.clone()
    if top_k:
        scores = transformers.TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None and 0 < top_p < 1:  # transformers rejects top_p = 0; ours keeps the argmax there
        scores = transformers.TopPLogitsWarper(top_p)(None, scores)
        assert torch.equal(torch.isfinite(scores), torch.isfinite(filtered))
    elif top_p is None:
        assert torch.equal(torch.isfinite(scores), torch.isfinite(filtered))


def test_top_p_zero_is_greedy_and_top_k_zero_is_off():
    torch.manual_seed(0)
    logits = torch.randn(64, 30)
    token, logprob = sample_next_token(logits, 1.0, None, 0.0)  # was "probability tensor contains inf/nan"
    assert torch.equal(token, logits.argmax(-1))
    assert torch.allclose(logprob, F.log_softmax(logits, -1).gather(-1, token[:, None]).squeeze(-1))
    torch.manual_seed(1)
    off, _ = sample_next_token(logits, 1.0, 0, None)  # was a shape error
    torch.manual_seed(1)
    plain, _ = sample_next_token(logits, 1.0, None, None)
    assert torch.equal(off, plain)


def test_set_dropout_reaches_every_dropout():
    model = GPT(GPTConfig(block_size=16, vocab_size=20, n_layer=2, n_head=2, n_embd=8, dropout=0.0))
    model.set_dropout(0.25)
    assert model.config.dropout == 0.25
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 1 + 2 * 2 and all(m.p == 0.25 for m in dropouts)  # embeddings + 2 per block
    assert all(block.attn.dropout == 0.25 for block in model.transformer.h)  # the attention weights' dropout
    x = torch.randint(0, 20, (2, 16))
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])  # dropout is on in train mode
    model.set_dropout(0.0)
    assert torch.equal(model(x)[0], model(x)[0])


def test_cpu_bf16_autocast_attends_in_fp32_except_in_generate(tiny_model, monkeypatch):
    # the CPU's bf16 attention backward is ~5x slower than fp32's: full sequences (training, scoring) attend in
    # fp32 under bf16 autocast; generate() (prefill and decode steps, with the KV cache) in bf16
    import model as model_module
    seen, sdpa = [], F.scaled_dot_product_attention

    def recording_sdpa(q, k, v, **kwargs):
        seen.append(q.dtype)
        return sdpa(q, k, v, **kwargs)
    monkeypatch.setattr(model_module.F, "scaled_dot_product_attention", recording_sdpa)
    idx = torch.randint(0, tiny_model.config.vocab_size, (2, 10))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = tiny_model(idx)
        assert set(seen) == {torch.float32}
        logits.float().sum().backward()  # the gradient flows back through the casts
        seen.clear()
        tiny_model.generate(idx, 3, temperature=0)
    n_layer = tiny_model.config.n_layer
    assert seen == [torch.bfloat16] * 3 * n_layer  # the prefill, then 2 decode steps
    assert all(p.grad is not None for p in tiny_model.transformer.h[0].attn.parameters())
