"""
Anthropic HH-RLHF (Bai et al. 2022, "Training a Helpful and Harmless Assistant with RLHF") in our
files, for the GPT-2 runs:

    python -m data.hh_rlhf.prepare [--out_dir data/hh_rlhf] [--cache_dir data/hh_rlhf/raw]
    python -m data.hh_rlhf.prepare --local_dir path/to/hh-rlhf      # already downloaded, no network

Downloads the four subsets' train/test files from the Hugging Face dataset repo Anthropic/hh-rlhf
(each written to the cache atomically, skipped when already there), or reads them from --local_dir,
laid out as in that repo: <subset>/<split>.jsonl.gz (a plain <subset>/<split>.jsonl also works;
subsets absent from --local_dir are skipped). Writes into out_dir:

    prefs_train.jsonl, prefs_val.jsonl  {"prompt", "chosen", "rejected", "subset"} (train, test splits)
    sft_train.jsonl, sft_val.jsonl      {"prompt", "response", "subset"}: the prompt and its chosen response
    rl_prompts.jsonl                    {"prompt", "subset"}: each distinct training prompt once
    with --judge_halves, also
    prefs_train_policy.jsonl, prefs_train_judge.jsonl   the training pairs in two halves with no prompt in
                                        both: the distinct prompts in order, alternately. Train the reward
                                        model the policies optimise on the first, a judge reward model on the
                                        second (evaluate.py --judge_reward_dir): a reward it never saw.

Prompts are multi-turn conversations in our convention (data/formats.py, split_hh). Records that do
not split (chosen and rejected differ before the last assistant turn) or whose chosen or rejected
response is empty are skipped and counted; length limits are left to the stages, which know block_size.
"""

import argparse
import os
import shutil
import urllib.request

from atomic_io import atomic_write
from data.formats import DataError, read_jsonl_lines, split_hh, write_jsonl

URL = "https://huggingface.co/datasets/Anthropic/hh-rlhf/resolve/main/{subset}/{split}.jsonl.gz"
SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
SPLITS = {"train": "train", "test": "val"}  # HH split -> our file suffix
HERE = os.path.dirname(os.path.abspath(__file__))


def download(subset, split, cache_dir):
    """The cached path of one raw file, downloading it first (through atomic_write: an interrupted
    download never looks like a finished one)."""
    path = os.path.join(cache_dir, subset, f"{split}.jsonl.gz")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        url = URL.format(subset=subset, split=split)
        print(f"downloading {url}")

        def fetch(tmp):
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f, length=1 << 20)
        atomic_write(path, fetch)
    return path


def local_file(subset, split, local_dir):
    for name in (f"{split}.jsonl.gz", f"{split}.jsonl"):
        path = os.path.join(local_dir, subset, name)
        if os.path.exists(path):
            return path
    return None


def convert(path, subset, skipped):
    """Raw HH-RLHF records of one file -> preference records; bad records are counted in `skipped`."""
    out = []
    for lineno, record in read_jsonl_lines(path):
        if not isinstance(record.get("chosen"), str) or not isinstance(record.get("rejected"), str):
            raise DataError(f"{path}:{lineno}: expected HH-RLHF string fields 'chosen' and 'rejected'")
        try:
            prompt, chosen, rejected = split_hh(record["chosen"], record["rejected"])
        except ValueError:
            skipped["does not split"] = skipped.get("does not split", 0) + 1
            continue
        if not chosen or not rejected:
            skipped["empty response"] = skipped.get("empty response", 0) + 1
            continue
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "subset": subset})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default=HERE)
    parser.add_argument("--cache_dir", default=os.path.join(HERE, "raw"), help="where downloads go")
    parser.add_argument("--local_dir", default=None, help="read raw files from here instead of downloading")
    parser.add_argument("--subsets", default=",".join(SUBSETS), help="comma-separated HH-RLHF subsets")
    parser.add_argument("--judge_halves", action="store_true", help="also write the training pairs in two prompt-disjoint "
                                                                        "halves, for a judge reward model")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    prefs = {suffix: [] for suffix in SPLITS.values()}
    skipped = {}
    for subset in args.subsets.split(","):
        for split, suffix in SPLITS.items():
            if args.local_dir is None:
                path = download(subset, split, args.cache_dir)
            else:
                path = local_file(subset, split, args.local_dir)
                if path is None:
                    print(f"{args.local_dir}: no {subset}/{split}.jsonl(.gz), skipped")
                    continue
            prefs[suffix] += convert(path, subset, skipped)
    if not prefs["train"]:
        raise SystemExit(f"no training records found (local_dir={args.local_dir})")

    files = {}
    for suffix, records in prefs.items():
        files[f"prefs_{suffix}.jsonl"] = records
        files[f"sft_{suffix}.jsonl"] = [{"prompt": r["prompt"], "response": r["chosen"], "subset": r["subset"]}
                                        for r in records]
    seen = {}
    for r in prefs["train"]:
        seen.setdefault(r["prompt"], {"prompt": r["prompt"], "subset": r["subset"]})
    files["rl_prompts.jsonl"] = list(seen.values())
    if args.judge_halves:
        half_of = {prompt: i % 2 for i, prompt in enumerate(seen)}  # distinct prompts in order, alternately
        files["prefs_train_policy.jsonl"] = [r for r in prefs["train"] if half_of[r["prompt"]] == 0]
        files["prefs_train_judge.jsonl"] = [r for r in prefs["train"] if half_of[r["prompt"]] == 1]
    for name, records in files.items():
        if records:
            write_jsonl(os.path.join(args.out_dir, name), records)
        print(f"{name:20s} {len(records):7d} records" + ("" if records else " (none: not written)"))
    print(f"skipped: {skipped or 'none'}")


if __name__ == "__main__":
    main()
