"""
Config parsing shared by every stage script.

Each script's defaults are a @dataclass with a comment on every field. On the command line:

    python sft.py --config config/sft_toy.py --max_iters=200 --out_dir=out/try2

Precedence: dataclass defaults < the config file < --key=value flags. A config file is Python and is
executed (so it may compute values); every top-level name in it that does not start with "_" and is
not a module must be a key of the dataclass. Unknown keys, in the file or on the command line, are
an error listing the nearest valid keys (or, for a key renamed since, its new name: RENAMED). An int
is accepted for a float field, a field whose default is None accepts any value, and `--help` lists
every key with its default and comment.
"""

import ast
import dataclasses
import difflib
import inspect
import os
import re
import sys
import types


class ConfigError(ValueError):
    pass


def field_comments(config_cls):
    """{field name: the comment after it in the dataclass source}, for --help."""
    comments = {}
    try:
        source = inspect.getsource(config_cls)
    except (OSError, TypeError):
        return comments
    for line in source.splitlines():
        m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.*)$", line)
        if m:
            comments[m.group(1)] = m.group(2)
    return comments


def help_text(config_cls, prog):
    comments = field_comments(config_cls)
    lines = [f"usage: python {prog} [--config FILE.py] [--key=value ...]", "", "keys (default  # meaning):"]
    for f in dataclasses.fields(config_cls):
        lines.append(f"  --{f.name}={getattr(config_cls(), f.name)!r}  # {comments.get(f.name, '')}")
    return "\n".join(lines)


# keys that were renamed so that one meaning has one name in every stage: old name -> new name
RENAMED = {
    "total_iters": "max_iters",  # PPO's iterations, like every other stage's optimizer steps
    "eval_max_pairs": "eval_max_examples",  # the validation-set size of the reward model and DPO, like SFT's
}


def unknown_key_error(where, key, valid):
    if RENAMED.get(key) in valid:
        return ConfigError(f"{where}: config key {key!r} was renamed to {RENAMED[key]!r}")
    near = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    return ConfigError(f"{where}: unknown config key {key!r}{hint}")


def coerce(where, key, value, default):
    """Check a value against the type of the field's default: int is fine for float, None takes anything."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (tuple, list)):
        ok = isinstance(value, (tuple, list))
        value = type(default)(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{where}: key {key!r} expects {type(default).__name__}, got {value!r}")
    return value


def parse_value(text):
    """'3' -> 3, '3e-4' -> 0.0003, 'True' -> True, 'None' -> None, anything else stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_config_file(path):
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no such file {path!r}")
    namespace = {"__file__": path}
    with open(path) as f:
        code = compile(f.read(), path, "exec")
    exec(code, namespace)
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and not isinstance(v, types.ModuleType)}


def parse_config(config_cls, argv=None, prog=None):
    """Build a config_cls instance from defaults, then --config FILE, then --key=value flags."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or os.path.basename(sys.argv[0])
    defaults = config_cls()
    valid = [f.name for f in dataclasses.fields(config_cls)]
    values = {}

    if "-h" in argv or "--help" in argv:
        print(help_text(config_cls, prog))
        sys.exit(0)

    # 1. the config file, if any (it must come before the flags it would otherwise override)
    flags = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" or arg.startswith("--config="):
            if arg == "--config":
                if i + 1 >= len(argv):
                    raise ConfigError("--config needs a file path")
                path = argv[i + 1]
                i += 1
            else:
                path = arg.split("=", 1)[1]
            for key, value in load_config_file(path).items():
                if key not in valid:
                    raise unknown_key_error(path, key, valid)
                values[key] = coerce(path, key, value, getattr(defaults, key))
        else:
            flags.append(arg)
        i += 1

    # 2. --key=value flags
    for arg in flags:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"argument {arg!r}: expected --key=value (or --config FILE)")
        key, text = arg[2:].split("=", 1)
        if key not in valid:
            raise unknown_key_error(f"--{key}", key, valid)
        values[key] = coerce(f"--{key}", key, parse_value(text), getattr(defaults, key))

    return dataclasses.replace(defaults, **values)


def run_cli(main):
    """Run a script's main(): a user error (bad config, bad data, a checkpoint that does not fit) ends
    with one line on stderr and exit status 2. Set TINYRLHF_TRACEBACK=1 to see the traceback."""
    try:
        main()
    except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError) as e:
        if os.environ.get("TINYRLHF_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
