"""
The one GPT of this project: the GPT-2 architecture (Radford et al. 2019), in the spirit of nanoGPT.

- pre-LayerNorm blocks (eps 1e-5), causal attention through F.scaled_dot_product_attention,
  the tanh-approximate GELU, learned position embeddings, token embedding tied to the LM head;
- `attention_mask` (1 = real token, 0 = padding) for left-padded batches: positions come from the
  mask's cumulative sum, so a padded row gives the same logits on its real tokens as the row alone;
- `hidden_states()` (B, T, n_embd) and an optional scalar head (`score()`, (B, T)) for the reward
  and value models, so no second model definition is ever needed;
- `generate()`: batched sampling with a key/value cache from left-padded prompts;
- `token_logprobs()`: per-token log-probs of given tokens, what PPO and DPO need;
- `from_pretrained()` / `save_pretrained()`: OpenAI's GPT-2 weights in the Hugging Face layout
  (config.json + model.safetensors), downloaded once with the standard library.
"""

import contextlib
import json
import math
import os
import shutil
import urllib.request
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from atomic_io import atomic_write, atomic_write_text


@dataclass
class GPTConfig:
    block_size: int = 1024  # maximum sequence length (number of learned positions)
    vocab_size: int = 50257  # GPT-2's BPE vocabulary
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # on embeddings, attention weights and residual branches (train mode only)
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2
    scalar_head: bool = False  # a Linear(n_embd, 1) head on the final hidden states (reward / value models)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x, attn_mask=None, kv_cache=None, start=0):
        """x: (B, T, C). attn_mask: None (plain causal) or bool (B, 1, T, T_keys), True = may attend.
        kv_cache: None, or (k_cache, v_cache), each (B, n_head, T_max, head_dim): this call's keys and
        values are written at positions start..start+T and attention runs over positions 0..start+T."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if kv_cache is not None:
            k_cache, v_cache = kv_cache
            k_cache[:, :, start:start + T] = k
            v_cache[:, :, start:start + T] = v
            k, v = k_cache[:, :, :start + T], v_cache[:, :, :start + T]  # (B, nh, T_keys, hs)
        dtype = q.dtype
        fp32_on_cpu = kv_cache is None and q.device.type == "cpu" and dtype == torch.bfloat16
        if fp32_on_cpu:
            # CPU only: the bf16 attention kernels' backward is ~5x slower than fp32's (torch 2.13; 23 ms against 5 ms
            # at 32 x 100 tokens, half of a toy SFT step), and fp32 costs the same forward: attend in fp32 here.
            # generate() (with the cache) stays in bf16, where the cache's half-size keys and values are faster
            q, k, v = q.float(), k.float(), v.float()
        dropout_p = self.dropout if self.training else 0.0
        with torch.autocast("cpu", enabled=False) if fp32_on_cpu else contextlib.nullcontext():  # autocast would recast
            if attn_mask is None:
                # causal; a single query (a decode step after cached keys) sees every key
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=T > 1)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        y = y.to(dtype).transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        # GPT-2 uses the tanh approximation of GELU ("gelu_new" in Hugging Face)
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask=None, kv_cache=None, start=0):
        x = x + self.attn(self.ln_1(x), attn_mask, kv_cache, start)
        x = x + self.mlp(self.ln_2(x))
        return x


# -----------------------------------------------------------------------------------------------------
# helpers of the GPT class below: attention masks for padded batches, sampling, GPT-2 weight files

def padding_attn_mask(attention_mask, T_query, start=0):
    """Build the boolean SDPA mask (B, 1, T_query, T_keys) for queries at positions start..start+T_query
    over keys 0..T_keys, T_keys = attention_mask.shape[1]: causal AND the key is a real token.
    A padded query would see no key at all (a softmax over nothing is NaN), so every query may
    always see itself; padded positions' outputs are never used."""
    T_keys = attention_mask.shape[1]
    device = attention_mask.device
    q_pos = torch.arange(start, start + T_query, device=device)[:, None]  # (Tq, 1)
    k_pos = torch.arange(T_keys, device=device)[None, :]  # (1, Tk)
    causal = k_pos <= q_pos  # (Tq, Tk)
    mask = causal[None] & attention_mask.bool()[:, None, :]  # (B, Tq, Tk)
    mask = mask | (k_pos == q_pos)[None]
    return mask[:, None]  # (B, 1, Tq, Tk)


def positions_from_mask(attention_mask):
    """Position ids counting only real tokens, so left padding does not shift them: (B, T)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def filter_logits(logits, top_k=None, top_p=None):
    """The logits (B, vocab) with every token outside the kept set at -inf. top_k keeps the k most likely
    tokens (ties with the k-th are kept too; None or 0 = off, as in transformers); top_p keeps the smallest
    set of most likely tokens whose probability reaches p (nucleus sampling, Holtzman et al. 2020; applied
    after top_k, to the renormalised distribution). The most likely token always stays."""
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        sorted_probs = sorted_logits.softmax(dim=-1)  # (B, vocab)
        # drop a token when the tokens before it already reach top_p; the first one has nothing before it
        drop_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= top_p
        drop_sorted[:, 0] = False  # so that top_p = 0 still keeps the most likely token (greedy)
        drop = torch.zeros_like(drop_sorted).scatter(-1, sorted_idx, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, with_logprob=True):
    """logits (B, vocab) -> (next token (B,), its log-prob (B,) under softmax(logits / temperature)).
    temperature 0 is greedy (log-prob under temperature 1). top_k / top_p (filter_logits) only restrict
    what is sampled: the log-prob is the unfiltered one, the distribution PPO treats as the policy.
    with_logprob=False returns (next token, None) and skips the log-softmax over the vocabulary."""
    if temperature == 0:
        next_token = logits.argmax(dim=-1)
    else:
        logits = logits / temperature
        filtered = filter_logits(logits, top_k, top_p)
        next_token = torch.multinomial(filtered.softmax(dim=-1), num_samples=1).squeeze(-1)  # (B,)
    if not with_logprob:
        return next_token, None
    return next_token, F.log_softmax(logits, dim=-1).gather(-1, next_token[:, None]).squeeze(-1)


def token_logprobs(logits, tokens, temperature=1.0):
    """log pi(token_t | tokens_<t) for given tokens: logits (B, T, vocab) predicting tokens (B, T) -> (B, T).
    log_softmax(z / tau)[y] = z_y / tau - logsumexp(z / tau); computed without materialising the full
    (B, T, vocab) log-softmax."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits.gather(-1, tokens[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


# Hugging Face's GPT-2 uses Conv1D, which stores these weights transposed relative to nn.Linear
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
PRETRAINED_REPOS = {
    "gpt2": "openai-community/gpt2",  # 124M
    "gpt2-medium": "openai-community/gpt2-medium",  # 350M
    "gpt2-large": "openai-community/gpt2-large",  # 774M
    "gpt2-xl": "openai-community/gpt2-xl",  # 1558M
}


def read_weights(model_dir):
    """A state dict from model.safetensors (preferred) or pytorch_model.bin in model_dir."""
    st_path = os.path.join(model_dir, "model.safetensors")
    bin_path = os.path.join(model_dir, "pytorch_model.bin")
    path = st_path if os.path.isfile(st_path) else bin_path if os.path.isfile(bin_path) else None
    if path is None:
        raise ValueError(f"{model_dir}: no model.safetensors or pytorch_model.bin")
    try:
        if path == st_path:
            from safetensors.torch import load_file
            return load_file(st_path)
        return torch.load(bin_path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or corrupt: every way a file can fail to be weights
        raise ValueError(f"{path}: not readable weights ({(str(e).splitlines() or [type(e).__name__])[0][:120]}); "
                         f"truncated?") from None


def download_pretrained(name, cache_dir=None):
    """Download config.json and model.safetensors of a GPT-2 model once into cache_dir/name; each file is
    written through atomic_io.atomic_write, so an interrupted download is never mistaken for a complete
    one. The endpoint is $HF_ENDPOINT or https://huggingface.co (any URL urllib opens,
    file:// included)."""
    cache_dir = cache_dir or os.environ.get("TINYRLHF_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tinyrlhf"))
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    model_dir = os.path.join(cache_dir, name)
    os.makedirs(model_dir, exist_ok=True)
    for filename in ("config.json", "model.safetensors"):
        path = os.path.join(model_dir, filename)
        if os.path.isfile(path):
            continue
        url = f"{endpoint}/{PRETRAINED_REPOS[name]}/resolve/main/{filename}"
        print(f"downloading {url} -> {path}")

        def fetch(tmp_path, url=url):
            with urllib.request.urlopen(url) as response, open(tmp_path, "wb") as f:
                shutil.copyfileobj(response, f, length=1 << 20)
        atomic_write(path, fetch)
    return model_dir


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None and config.block_size is not None
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying (Press & Wolf 2017), as in GPT-2
        self.score_head = nn.Linear(config.n_embd, 1) if config.scalar_head else None

        # GPT-2 init: N(0, 0.02), and residual projections scaled by 1/sqrt(2 * n_layer)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if self.score_head is not None:
            self._init_score_head()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def _init_score_head(self):
        # Ziegler et al. 2019 initialise the reward head with std 1/sqrt(n_embd + 1)
        torch.nn.init.normal_(self.score_head.weight, std=1 / math.sqrt(self.config.n_embd + 1))
        torch.nn.init.zeros_(self.score_head.bias)

    def set_dropout(self, p):
        """Set the dropout probability of every dropout in the model (embeddings, attention weights,
        residual branches), e.g. to fine-tune with dropout a model that was saved without it."""
        self.config.dropout = p
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.p = p
            elif isinstance(m, CausalSelfAttention):
                m.dropout = p  # the attention weights' dropout, passed to scaled_dot_product_attention
        return self

    def add_scalar_head(self):
        """Give this model a freshly initialised scalar head (for a reward or value model made from a
        language model's weights)."""
        self.config.scalar_head = True
        device = self.lm_head.weight.device
        self.score_head = nn.Linear(self.config.n_embd, 1).to(device)
        self._init_score_head()
        return self

    def get_num_params(self, non_embedding=True):
        """Parameter count; the position embeddings are not counted with non_embedding=True (the token
        embeddings are, since they are tied to the LM head's weights)."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    # -------------------------------------------------------------------------------------------------
    # forward passes

    def hidden_states(self, idx, attention_mask=None, kv_cache=None, start=0):
        """Final hidden states after ln_f: (B, T, n_embd). `attention_mask` (B, T_keys) marks real tokens
        (1) and padding (0); without a cache T_keys = T."""
        B, T = idx.shape
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size {self.config.block_size}")
        if attention_mask is None and kv_cache is not None and start > 0 and T > 1:
            # a chunk after cached keys: an explicit mask keeps causality right
            attention_mask = torch.ones(B, start + T, dtype=torch.long, device=idx.device)
        if attention_mask is None:
            pos = torch.arange(start, start + T, device=idx.device)[None]  # (1, T)
            attn_mask = None  # plain causal attention
        else:
            pos = positions_from_mask(attention_mask)[:, start:start + T]  # (B, T)
            attn_mask = padding_attn_mask(attention_mask, T, start)  # (B, 1, T, T_keys)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, attn_mask, None if kv_cache is None else kv_cache[i], start)
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None, attention_mask=None, scores=False):
        """idx: (B, T) token ids. Returns (logits (B, T, vocab), loss); with targets (B, T), the loss is the
        mean cross-entropy over positions whose target is not -100. With scores=True it returns instead the
        scalar head at every position, (B, T): reward and value models go through forward() too, which is
        what lets DDP synchronise their gradients."""
        x = self.hidden_states(idx, attention_mask)
        if scores:
            if self.score_head is None:
                raise ValueError("this model has no scalar head: build it with GPTConfig(scalar_head=True) or add_scalar_head()")
            return self.score_head(x).squeeze(-1)  # (B, T)
        logits = self.lm_head(x)  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-100)
        return logits, loss

    def score(self, idx, attention_mask=None):
        """The scalar head at every position: (B, T). The reward model reads it at the end-of-text
        token, the value model at every response token."""
        return self(idx, attention_mask=attention_mask, scores=True)

    # -------------------------------------------------------------------------------------------------
    # sampling

    @contextlib.contextmanager
    def widening_weights_stored_in_out(self, enabled):
        """One prompt on the CPU: a decode step multiplies a single row by every weight matrix, and MKL reads a
        widening matrix (out > in: attn.c_attn, mlp.c_fc and the LM head, tied to the token embedding) 1.1-1.9x
        faster when it is stored (in, out), as transformers' Conv1D stores it (bench/bench_linear_layout.py; from
        2 rows on some CPUs, from 4 on others, nn.Linear's layout is as fast or faster). Inside this context
        those weights hold a transposed copy of their storage: the same values and shape, other strides, so
        nn.Linear's x @ W.T is unchanged; the originals are put back on exit, even after an error. A copy made
        per call is never stale (a fused AdamW step does not bump the version counter a cache would key on);
        for GPT-2-small it is 0.35 GB more memory and 0.2-0.4 s, won back after ~30-50 new tokens."""
        if not enabled:
            yield
            return
        widening = [m.weight for m in self.modules() if isinstance(m, nn.Linear) and m.out_features > m.in_features]
        originals = [w.data for w in widening]
        try:
            for w, data in zip(widening, originals):
                w.data = data.t().contiguous().t()  # (out, in) shape, (in, out) in memory
            yield
        finally:
            for w, data in zip(widening, originals):
                w.data = data

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_token_id=None,
                 pad_token_id=0, attention_mask=None, return_logprobs=False):
        """Sample max_new_tokens continuations of the (left-padded) prompts idx (B, T0), with a key/value
        cache: the prompt is run once, then one token per step. temperature 0 means greedy. A row stops
        at eos_token_id (the EOS is kept) and is filled with pad_token_id after it; sampling stops when
        every row has ended. Returns the tokens (B, T0 + T_new), and with return_logprobs also the log-probs
        (B, T_new) of the sampled tokens under softmax(logits / temperature) -- before top-k/top-p filtering,
        the distribution PPO treats as the policy -- with 0 after a row's end."""
        B, T0 = idx.shape
        T_max = T0 + max_new_tokens
        if T_max > self.config.block_size:
            raise ValueError(f"prompt of {T0} tokens + max_new_tokens {max_new_tokens} is longer than "
                             f"block_size {self.config.block_size}")
        if attention_mask is None:
            attention_mask = torch.ones_like(idx)
        # the mask grows with every sampled token: 1 for tokens up to and including a row's EOS, 0 after
        mask = torch.cat([attention_mask.long(), attention_mask.new_zeros(B, max_new_tokens).long()], dim=1)  # (B, T_max)
        # inference mode skips even the bookkeeping no_grad keeps (version counters, view tracking): ~4% of a tiny
        # model's decode step. Its tensors may not enter autograd later, so the results leave it as clones
        with self.widening_weights_stored_in_out(B == 1 and idx.device.type == "cpu"), torch.inference_mode():
            n_head, C = self.config.n_head, self.config.n_embd
            dtype = self.lm_head.weight.dtype if not torch.is_autocast_enabled(idx.device.type) \
                else torch.get_autocast_dtype(idx.device.type)
            kv_cache = [(idx.new_zeros(B, n_head, T_max, C // n_head, dtype=dtype),
                         idx.new_zeros(B, n_head, T_max, C // n_head, dtype=dtype)) for _ in self.transformer.h]

            # without padding in the prompts every query attends every cached key: no mask needed (a row that ended
            # is discarded, so what it attends after its EOS does not matter)
            padded = not bool(attention_mask.all())
            tokens = [idx]
            logprobs = []
            finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
            x = self.hidden_states(idx, mask[:, :T0] if padded else None, kv_cache, start=0)[:, -1]  # prefill: (B, C)
            for step in range(max_new_tokens):
                logits = self.lm_head(x).float()  # (B, vocab)
                next_token, logprob = sample_next_token(logits, temperature, top_k, top_p, with_logprob=return_logprobs)
                next_token = torch.where(finished, torch.full_like(next_token, pad_token_id), next_token)  # (B,)
                tokens.append(next_token[:, None])
                if return_logprobs:
                    logprobs.append(torch.where(finished, torch.zeros_like(logprob), logprob)[:, None])  # (B, 1)
                mask[:, T0 + step] = (~finished).long()
                if eos_token_id is not None:
                    finished = finished | (next_token == eos_token_id)
                if finished.all() or step == max_new_tokens - 1:
                    break
                step_mask = mask[:, :T0 + step + 1] if padded else None
                x = self.hidden_states(next_token[:, None], step_mask, kv_cache, start=T0 + step)[:, -1]  # (B, C)
            out = torch.cat(tokens, dim=1)  # (B, T0 + T_new)
            logprobs = torch.cat(logprobs, dim=1) if return_logprobs else None  # (B, T_new)
        return (out.clone(), logprobs.clone()) if return_logprobs else out.clone()

    # -------------------------------------------------------------------------------------------------
    # GPT-2 weights in the Hugging Face layout

    @classmethod
    def from_pretrained(cls, name_or_path, dropout=0.0, cache_dir=None):
        """'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl' (downloaded once into cache_dir, by default
        ~/.cache/tinyrlhf, from $HF_ENDPOINT or https://huggingface.co), or a local directory holding
        config.json and model.safetensors (or pytorch_model.bin)."""
        if os.path.isdir(name_or_path):
            model_dir = name_or_path
        elif name_or_path in PRETRAINED_REPOS:
            model_dir = download_pretrained(name_or_path, cache_dir)
        else:
            raise ValueError(f"unknown model {name_or_path!r}: expected one of {', '.join(PRETRAINED_REPOS)} "
                             f"or a directory with config.json and model.safetensors")
        config_path = os.path.join(model_dir, "config.json")
        if not os.path.isfile(config_path):
            raise ValueError(f"{model_dir}: no config.json")
        try:
            with open(config_path) as f:
                hf = json.load(f)
        except ValueError as e:
            raise ValueError(f"{config_path}: not a JSON config ({e})") from None
        if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"{config_path}: activation_function {hf['activation_function']!r} is not GPT-2's gelu_new")
        missing = [k for k in ("n_positions", "vocab_size", "n_layer", "n_head", "n_embd") if not isinstance(hf.get(k), int)]
        if missing:
            raise ValueError(f"{config_path}: no integer {missing[0]!r}; a GPT-2 config needs n_positions, vocab_size, "
                             f"n_layer, n_head and n_embd")
        config = GPTConfig(block_size=hf["n_positions"], vocab_size=hf["vocab_size"], n_layer=hf["n_layer"],
                           n_head=hf["n_head"], n_embd=hf["n_embd"], dropout=dropout, bias=True)
        model = cls(config)
        model.load_hf_state_dict(read_weights(model_dir))
        return model

    def load_hf_state_dict(self, hf_sd):
        """Copy a Hugging Face GPT2LMHeadModel / GPT2Model state dict into this model. Conv1D weights are
        stored (in, out) there and transposed here; the attention buffers ('attn.bias',
        'attn.masked_bias') of old checkpoints are skipped; every key and shape is checked."""
        hf_sd = {k.removeprefix("transformer."): v for k, v in hf_sd.items()
                 if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        hf_sd.pop("lm_head.weight", None)  # tied to wte
        own = {k.removeprefix("transformer."): v for k, v in self.state_dict().items()
               if not k.startswith(("lm_head.", "score_head."))}
        missing = sorted(set(own) - set(hf_sd))
        unexpected = sorted(set(hf_sd) - set(own))
        if missing:
            raise ValueError(f"checkpoint is missing key {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        if unexpected:
            raise ValueError(f"checkpoint has unexpected key {unexpected[0]!r}" + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
        with torch.no_grad():
            for k, p in own.items():
                w = hf_sd[k]
                if k.endswith(CONV1D_WEIGHTS):
                    w = w.t()
                if w.shape != p.shape:
                    raise ValueError(f"checkpoint key {k!r} has shape {tuple(w.shape)}, the model expects {tuple(p.shape)}")
                p.copy_(w)

    def save_pretrained(self, save_dir):
        """Write config.json + model.safetensors in the Hugging Face GPT-2 layout, so the model opens with
        transformers.GPT2LMHeadModel.from_pretrained(save_dir). The scalar head is not part of that layout."""
        from safetensors.torch import save_file
        c = self.config
        if not c.bias:
            raise ValueError("save_pretrained: the GPT-2 layout has biases everywhere; this model has bias=False")
        hf_config = {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
            "n_positions": c.block_size, "n_ctx": c.block_size, "vocab_size": c.vocab_size, "n_layer": c.n_layer,
            "n_head": c.n_head, "n_embd": c.n_embd, "n_inner": None, "layer_norm_epsilon": 1e-5,
            "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout,
            "initializer_range": 0.02, "scale_attn_weights": True, "tie_word_embeddings": True,
            "bos_token_id": 50256, "eos_token_id": 50256,
        }
        tensors = {}
        for k, v in self.state_dict().items():
            if k.startswith(("lm_head.", "score_head.")):
                continue  # lm_head is tied to wte; the scalar head has no place in GPT2LMHeadModel
            tensors[k] = (v.t() if k.endswith(CONV1D_WEIGHTS) else v).detach().contiguous().cpu()
        os.makedirs(save_dir, exist_ok=True)
        atomic_write_text(os.path.join(save_dir, "config.json"), json.dumps(hf_config, indent=2))
        atomic_write(os.path.join(save_dir, "model.safetensors"), lambda p: save_file(tensors, p, metadata={"format": "pt"}))


if __name__ == "__main__":
    config = GPTConfig()
    print(f"GPT-2 small geometry: {GPT(config).get_num_params() / 1e6:.1f}M parameters ({asdict(config)})")
