"""
From records to tensors: the tokenisation of demonstrations and preference pairs (in the template of
data/formats.py), and the padding that turns lists of token ids into batches.

    tokenize_demonstrations(records, tok, ...) -> [(prompt_ids, response_ids)]
    tokenize_pairs(records, tok, ...)          -> [(prompt_ids, chosen_ids, rejected_ids)]
    tokenize_prompts(records, tok, ...)        -> records, [prompt_ids]   (RL prompts with room to answer)

Response ids never include the end-of-text token: each stage appends tok.eot_id where its lesson puts it
(sft.build_example for the language-model losses, the reward model's sequences).

Padding: right padding for training and scoring (a causal model's real tokens never see the padding
after them, so no attention mask is needed), left padding for sampling (every prompt then ends at the
same position and generation continues all rows in step; the attention mask marks the padding).
"""

import torch

from data.formats import DataError, format_prompt, format_response, where_is


def encode(tok, text, where):
    """tok.encode, with a character the char vocabulary lacks reported at the record that holds it."""
    try:
        return tok.encode(text)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None


def check_length(n_tokens, block_size, shifted, where, what, skip_long):
    """True if a sequence of n_tokens (prompt + response + end-of-text) fits the model; False if it does
    not and skip_long says to skip it; else a DataError naming where it is. shifted: the model reads
    tokens[:-1] and predicts tokens[1:] (SFT, DPO), so block_size + 1 tokens fit; otherwise (the reward
    model) it reads every token."""
    if n_tokens <= block_size + shifted:
        return True
    if skip_long:
        return False
    raise DataError(f"{where}: {what} of {n_tokens} tokens is longer than block_size {block_size}"
                    f"{' (+1)' if shifted else ''}; shorten it or pass --skip_long=True")


def tokenize_demonstrations(records, tok, block_size, path, skip_long, shifted=True):
    """SFT records -> ([(prompt_ids, response_ids)], number skipped as too long). An example longer than
    the model fits is a DataError naming the file and line, or is skipped and counted with skip_long."""
    examples, n_long = [], 0
    for i, r in enumerate(records):
        where = where_is(path, r, i)
        prompt, response = encode(tok, format_prompt(r["prompt"]), where), encode(tok, format_response(r["response"]), where)
        if check_length(len(prompt) + len(response) + 1, block_size, shifted, where, "example", skip_long):
            examples.append((prompt, response))
        else:
            n_long += 1
    if not examples:
        raise DataError(f"{path}: every example is longer than block_size {block_size}")
    return examples, n_long


def tokenize_pairs(records, tok, block_size, path, skip_long, shifted):
    """Preference records -> ([(prompt_ids, chosen_ids, rejected_ids)], n_identical, n_long). A pair whose
    chosen and rejected responses are the same carries no preference: it is skipped and counted. A pair
    whose longer sequence does not fit is a DataError naming the file and line, or is skipped with
    skip_long. shifted as in check_length: True for DPO, False for the reward model."""
    pairs, n_identical, n_long = [], 0, 0
    for i, r in enumerate(records):
        if r["chosen"] == r["rejected"]:
            n_identical += 1
            continue
        where = where_is(path, r, i)
        prompt = encode(tok, format_prompt(r["prompt"]), where)
        chosen, rejected = encode(tok, format_response(r["chosen"]), where), encode(tok, format_response(r["rejected"]), where)
        if check_length(len(prompt) + max(len(chosen), len(rejected)) + 1, block_size, shifted, where, "pair", skip_long):
            pairs.append((prompt, chosen, rejected))
        else:
            n_long += 1
    if not pairs:
        raise DataError(f"{path}: no usable pairs ({n_identical} identical, {n_long} too long)")
    return pairs, n_identical, n_long


def tokenize_prompts(records, tok, block_size, max_new_tokens, path, skip_long):
    """Prompt records (RL rollouts) -> (the records kept, their token ids, number skipped): a prompt must leave
    room for max_new_tokens in block_size; one that does not is a DataError naming the file and line, or is
    skipped and counted with skip_long."""
    kept, prompt_ids, n_long = [], [], 0
    for i, r in enumerate(records):
        ids = encode(tok, format_prompt(r["prompt"]), where_is(path, r, i))
        if len(ids) + max_new_tokens <= block_size:
            kept.append(r)
            prompt_ids.append(ids)
        elif skip_long:
            n_long += 1
        else:
            raise DataError(f"{where_is(path, r, i)}: prompt of {len(ids)} tokens leaves no room for "
                            f"max_new_tokens {max_new_tokens} in block_size {block_size}; pass --skip_long=True")
    if not kept:
        raise DataError(f"{path}: no prompt leaves room for max_new_tokens {max_new_tokens} in block_size {block_size}")
    return kept, prompt_ids, n_long


def right_pad(rows, pad_value):
    """Lists of ints -> (B, T) long tensor, each row followed by pad_value up to the longest row."""
    out = torch.full((len(rows), max(len(r) for r in rows)), pad_value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def collate(examples, pad_id, device):
    """(inputs, labels) examples (sft.build_example) -> x (B, T), y (B, T), right-padded; labels are -100
    (ignored by the loss) on the padding."""
    x = right_pad([ids for ids, _ in examples], pad_id)
    y = right_pad([labels for _, labels in examples], -100)
    return x.to(device), y.to(device)


def collate_sequences(seqs, pad_id, device):
    """Token lists -> x (N, T) right-padded with pad_id, and their lengths (N,)."""
    lengths = torch.tensor([len(s) for s in seqs])
    return right_pad(seqs, pad_id).to(device), lengths.to(device)


def left_pad(rows, pad_id, device="cpu"):
    """Prompts as lists of token ids -> (idx (B, T), attention_mask (B, T)), padded on the left."""
    T = max(len(r) for r in rows)
    idx = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        idx[i, T - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, T - len(r):] = 1
    return idx.to(device), mask.to(device)
