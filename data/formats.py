"""
The dialogue template and the readers for every data file the stages load.

Template (one turn):   "### Human: <prompt>\n### Assistant: <response><end>"
    format_prompt(prompt) + format_response(response), then the stage appends the tokenizer's
    end-of-text id. Only the response and <end> are trained on or scored.

Records are dicts with string fields, one JSON object per line (JSONL):
    SFT          {"prompt", "response", ...}
    preferences  {"prompt", "chosen", "rejected", ...}
    unpaired     {"prompt", "completion", "label": true | false, ...}   (KTO: thumbs-up / thumbs-down; TRL's format)
    prompts      {"prompt", ...}                       (RL and evaluation prompts)
Extra fields (e.g. "kind" in the toy world, "subset" in HH-RLHF) are kept as they are.

Multi-turn: "prompt" is the whole conversation before the last assistant turn, written so that
format_prompt() yields the transcript in our template:
    "a\n### Assistant: b\n### Human: c"  ->  "### Human: a\n### Assistant: b\n### Human: c\n### Assistant:"

Every problem with a file raises DataError, whose message starts with "path:line: " (or "path: " for
the file as a whole) and says what was expected.
"""

import gzip
import json
import os
import re

from atomic_io import atomic_write_text

HUMAN = "### Human:"
ASSISTANT = "### Assistant:"


def format_prompt(prompt):
    return f"{HUMAN} {prompt}\n{ASSISTANT}"


def format_response(response):
    # the stage appends the end-of-text id itself: <end> is a token, not text
    return " " + response


class DataError(ValueError):
    """A data file is not what a reader expects. The message names the file and line."""


class Record(dict):
    """A record as read from its file: a plain dict of its fields, plus .line, the line it was on (for the
    messages of later checks, such as a too-long example)."""
    line = None


def where_is(path, record, i):
    """'path:line' of a record (a Record knows its line; else its 1-based position in the list)."""
    return f"{path}:{getattr(record, 'line', None) or i + 1}"


def read_jsonl(path):
    """One dict per non-blank line of a .jsonl (or .jsonl.gz) file. Blank lines are skipped; a
    malformed line, a line that is not a JSON object, or a file with no records is a DataError."""
    return [record for _, record in read_jsonl_lines(path)]


def read_jsonl_lines(path):
    """[(line_number, record)] for the non-blank lines of a JSONL file (gzip if it ends in .gz); each record
    a Record, which knows its line."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: a directory, expected a JSONL file")
    opener = gzip.open if str(path).endswith(".gz") else open
    records = []
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):  # bytes, decoded line by line: an error knows its line
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})") from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg.removesuffix(' at')} at column {e.colno}); "
                                    f"expected one JSON object per line") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
                record = Record(record)
                record.line = lineno
                records.append((lineno, record))
    except EOFError as e:  # a .gz cut short
        raise DataError(f"{path}: truncated ({e})") from None
    except OSError as e:  # unreadable, or not gzip data
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not records:
        raise DataError(f"{path}: no records (expected one JSON object per line)")
    return records


def _require_str(record, key, where):
    value = record.get(key)
    if key not in record:
        raise DataError(f"{where}missing key {key!r} (expected a non-empty string)")
    if not isinstance(value, str):
        raise DataError(f"{where}key {key!r} is {type(value).__name__}, expected a non-empty string")
    if not value:
        raise DataError(f"{where}key {key!r} is empty, expected a non-empty string")
    return value


def messages_to_sft(messages):
    """[{"role", "content"}, ...] -> (prompt, response). The last message is the assistant's
    response; earlier user/assistant turns are folded into the prompt (multi-turn convention above).
    System messages have no slot in our template: their text is put before the first user message,
    separated by a blank line. Raises ValueError saying what was expected."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list of {'role', 'content'} objects")
    system, turns = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
            raise ValueError(f"messages[{i}] must be an object with role 'user', 'assistant' or 'system'")
        if not isinstance(m.get("content"), str) or not m["content"]:
            raise ValueError(f"messages[{i}] ({m['role']}) must have a non-empty string 'content'")
        (system if m["role"] == "system" else turns).append(m)
    if len(turns) < 2 or turns[-1]["role"] != "assistant":
        raise ValueError("the last message must be from the assistant, after at least one user message")
    if turns[0]["role"] != "user":
        raise ValueError("the first non-system message must be from the user")
    parts = [turns[0]["content"]]
    for m in turns[1:-1]:
        parts.append(f"{ASSISTANT if m['role'] == 'assistant' else HUMAN} {m['content']}")
    prompt = "\n".join(parts)
    if system:
        prompt = "\n".join(m["content"] for m in system) + "\n\n" + prompt
    return prompt, turns[-1]["content"]


def load_sft(path):
    """SFT demonstrations {"prompt", "response", ...}, from records in either form:
    {"prompt": str, "response": str} or {"messages": [{"role", "content"}, ...]}."""
    out = []
    for lineno, record in read_jsonl_lines(path):
        where = f"{path}:{lineno}: "
        if "messages" in record:
            try:
                prompt, response = messages_to_sft(record["messages"])
            except ValueError as e:
                raise DataError(where + str(e)) from None
            line, record = record.line, Record({k: v for k, v in record.items() if k != "messages"})
            record.update(prompt=prompt, response=response)
            record.line = line
        elif "prompt" not in record and "response" not in record:
            raise DataError(where + "expected keys 'prompt' and 'response', or 'messages'")
        _require_str(record, "prompt", where)
        _require_str(record, "response", where)
        out.append(record)
    return out


HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def split_hh(chosen, rejected):
    """Anthropic HH-RLHF transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ...", chosen and rejected
    sharing every turn but the last) -> (prompt, chosen_response, rejected_response).

    The shared prefix up to and including the LAST "\\n\\nAssistant:" of `chosen` is the prompt; it is
    returned in our multi-turn convention ("a\\n### Assistant: b\\n### Human: c"), so that
    format_prompt(prompt) is the same conversation in our template. Responses lose the leading space
    (and surrounding whitespace). Raises ValueError if the transcripts do not have that shape."""
    marker = "\n\nAssistant:"
    cut = chosen.rfind(marker)
    if cut == -1:
        raise ValueError("no '\\n\\nAssistant:' turn in 'chosen'")
    prefix = chosen[: cut + len(marker)]
    if not rejected.startswith(prefix):
        raise ValueError("'chosen' and 'rejected' differ before the last '\\n\\nAssistant:'")
    # prefix = "\n\nHuman: a\n\nAssistant: b ... \n\nAssistant:"  -> roles [Human, Assistant, ..., Assistant]
    pieces = HH_TURN.split(prefix)  # ["", "Human", " a", "Assistant", " b", ..., "Assistant", ""]
    if pieces[0].strip() or len(pieces) < 5 or pieces[1] != "Human":
        raise ValueError("transcript must start with '\\n\\nHuman:'")
    roles, texts = pieces[1::2], [t.strip() for t in pieces[2::2]]
    parts = [texts[0]]
    for role, text in zip(roles[1:-1], texts[1:-1]):
        parts.append(f"{ASSISTANT if role == 'Assistant' else HUMAN} {text}")
    return "\n".join(parts), chosen[len(prefix):].strip(), rejected[len(prefix):].strip()


def load_prefs(path):
    """Preference pairs {"prompt", "chosen", "rejected", ...}. Raw HH-RLHF records (only "chosen" and
    "rejected", whole transcripts) are split with split_hh(). Identical chosen and rejected are allowed
    (the reward stage counts and skips them)."""
    out = []
    for lineno, record in read_jsonl_lines(path):
        where = f"{path}:{lineno}: "
        if "prompt" not in record and "chosen" in record and "rejected" in record:
            chosen = _require_str(record, "chosen", where)
            rejected = _require_str(record, "rejected", where)
            try:
                prompt, chosen, rejected = split_hh(chosen, rejected)
            except ValueError as e:
                raise DataError(where + f"not an HH-RLHF transcript pair: {e}") from None
            record.update(prompt=prompt, chosen=chosen, rejected=rejected)
        for key in ("prompt", "chosen", "rejected"):
            _require_str(record, key, where)
        out.append(record)
    return out


def load_unpaired(path):
    """Unpaired feedback {"prompt", "completion", "label"}: a completion judged desirable (label true) or
    undesirable (false) on its own, with no second response to compare it with."""
    out = []
    for lineno, record in read_jsonl_lines(path):
        where = f"{path}:{lineno}: "
        for key in ("prompt", "completion"):
            _require_str(record, key, where)
        if "label" not in record:
            raise DataError(f"{where}missing key 'label' (expected true or false)")
        if not isinstance(record["label"], bool):
            raise DataError(f"{where}key 'label' is {record['label']!r}, expected true or false")
        out.append(record)
    return out


def load_prompts(path):
    """Prompts {"prompt", ...} for RL rollouts and evaluation."""
    out = []
    for lineno, record in read_jsonl_lines(path):
        _require_str(record, "prompt", f"{path}:{lineno}: ")
        out.append(record)
    return out


def write_jsonl(path, records):
    """Write records one per line, atomically (atomic_io: a crash never leaves half a file)."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
