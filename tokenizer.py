"""
Tokenizers: GPT-2's byte-level BPE (through tiktoken, fully offline) and a character-level
tokenizer for the tiny CPU models. Both expose the same small interface:

    tok.encode(text) -> list[int]      tok.decode(ids) -> str
    tok.vocab_size   tok.eot_id   tok.pad_id   tok.eot_text
    tok.spec         what checkpoints store to rebuild it: "gpt2", or {"type": "char", "chars": ...}

End-of-text is a special id that `encode` never produces from ordinary text: a stage appends
`tok.eot_id` itself after a response. `pad_id` is distinct from `eot_id`, so a padded batch never
looks like a batch of finished responses; every padded position is masked anyway (attention_mask).
"""

import base64
import json
import os

import tiktoken

from atomic_io import atomic_write_text

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")

# GPT-2's pre-tokenisation regex, as in OpenAI's encoder.py and tiktoken's "gpt2" encoding.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_EOT_ID = 50256


class GPT2Tokenizer:
    """GPT-2 BPE built from the merge ranks shipped in assets/gpt2.tiktoken (MIT, from openai-whisper),
    so that nothing is downloaded: tiktoken.get_encoding("gpt2") would fetch the same file at first use."""

    eot_text = "<|endoftext|>"
    spec = "gpt2"

    def __init__(self, ranks_path=os.path.join(ASSETS_DIR, "gpt2.tiktoken")):
        ranks = {}
        with open(ranks_path, "rb") as f:
            for line in f:
                if line.strip():
                    token, rank = line.split()
                    ranks[base64.b64decode(token)] = int(rank)
        self.enc = tiktoken.Encoding(
            name="gpt2", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
            special_tokens={self.eot_text: GPT2_EOT_ID},
        )
        self.vocab_size = self.enc.n_vocab  # 50257
        self.eot_id = GPT2_EOT_ID
        # GPT-2 has no pad token. Any id works as filler because padded positions are always masked;
        # we use 0 ("!") rather than end-of-text so a forgotten mask shows up as "!!!" in samples.
        self.pad_id = 0

    def encode(self, text):
        # special tokens in user text are encoded as plain text, never as end-of-text
        return self.enc.encode_ordinary(text)

    def decode(self, ids):
        return self.enc.decode([i for i in ids])


class CharTokenizer:
    """One id per character, plus two specials: 0 = pad, 1 = end-of-text. The vocabulary is built
    from the training text and saved beside the data as JSON, so every stage reads the same ids."""

    eot_text = "<end>"
    pad_id = 0
    eot_id = 1

    def __init__(self, chars):
        self.chars = "".join(sorted(set(chars)))
        self.stoi = {c: i + 2 for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars) + 2

    @classmethod
    def from_texts(cls, texts):
        return cls("".join(set("".join(texts))))

    def encode(self, text):
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the char vocabulary "
                             f"({len(self.chars)} characters)") from None

    def decode(self, ids):
        out = []
        for i in ids:
            i = int(i)
            if i == self.eot_id:
                out.append(self.eot_text)
            elif i >= 2:
                out.append(self.chars[i - 2])
        return "".join(out)

    @property
    def spec(self):
        # the vocabulary itself, not the path of vocab.json: a checkpoint stays readable when data is regenerated
        return {"type": "char", "chars": self.chars}

    def save(self, path):
        atomic_write_text(path, json.dumps(self.spec))

    @classmethod
    def load(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                spec = json.load(f)
        except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
            raise ValueError(f"{path}: not a readable char vocabulary ({e})") from None
        if not isinstance(spec, dict) or spec.get("type") != "char" or not isinstance(spec.get("chars"), str):
            raise ValueError(f"{path}: not a char vocabulary (expected {{'type': 'char', 'chars': ...}})")
        return cls(spec["chars"])


def get_tokenizer(name):
    """'gpt2' -> GPT-2 BPE; a path to a char vocabulary JSON (or a directory holding vocab.json), or a
    char tokenizer's spec as stored in checkpoints -> CharTokenizer."""
    if isinstance(name, dict) and name.get("type") == "char" and isinstance(name.get("chars"), str):
        return CharTokenizer(name["chars"])
    if name == "gpt2":
        return GPT2Tokenizer()
    path = os.path.join(name, "vocab.json") if os.path.isdir(name) else name
    if path.endswith(".json") and os.path.isfile(path):
        return CharTokenizer.load(path)
    raise ValueError(f"unknown tokenizer {name!r}: expected 'gpt2' or a path to a char vocab.json")
