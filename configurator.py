"""
Config parsing shared by every stage script.

Each script's defaults are a @dataclass with a comment on every field. On the command line:

    python sft.py --config config/sft_toy.py --max_iters=200 --out_dir=out/try2

Precedence: dataclass defaults < the config file < --key=value flags. A config file is Python and is
executed (so it may compute values); every top-level name in it that does not start with "_" and is
not a module must be a key of the dataclass. Unknown keys, in the file or on the command line, are
an error listing the nearest valid keys (or, for a key renamed since, its new name: RENAMED). An int
is accepted for a float field, a field whose default is None accepts any value, a string field takes a
flag's text as written (`--bon=1,2,4` is the string "1,2,4"), and `--help` lists
every key with its default and comment. Every value is then checked against its meaningful range
(RANGES, shared by the stages, and a stage's own), so that `--batch_size=0` is an error naming the key,
not a run that trains on nothing.
"""

import ast
import dataclasses
import difflib
import gc
import inspect
import math
import os
import re
import signal
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
    try:
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: {e.msg} (a config file is Python: key = value lines)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (a config file is Python: key = value lines)") from None
    try:
        exec(code, namespace)
    except Exception as e:  # the file's own code failed: say where, as a user error, not a traceback of ours
        line = e.__traceback__.tb_next.tb_lineno if e.__traceback__.tb_next else "?"
        raise ConfigError(f"{path}:{line}: {type(e).__name__}: {e}") from None
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and not isinstance(v, types.ModuleType)}


# -----------------------------------------------------------------------------
# meaningful ranges: a setting outside its range is an error before anything runs, not a run that trains on
# nothing (max_iters 0), divides by zero (an interval of 0) or quietly does something else (a negative beta)

def at_least(low):
    return (lambda v: v >= low), f">= {low}"


def above(low):
    return (lambda v: v > low), f"> {low}"


def between(low, high, high_open=True):
    """low <= v < high (or <= high with high_open=False)."""
    if high_open:
        return (lambda v: low <= v < high), f"in [{low}, {high})"
    return (lambda v: low <= v <= high), f"in [{low}, {high}]"


def one_of(*choices):
    return (lambda v: v in choices), "one of " + ", ".join(repr(c) for c in choices)


# settings several stages share, checked in every config that has them; a stage adds its own (parse_config's
# `ranges`), which take precedence
RANGES = {
    "batch_size": at_least(1), "grad_accum_steps": at_least(1), "max_iters": at_least(1), "minibatch_size": at_least(1),
    "ppo_epochs": at_least(1), "eval_interval": at_least(1), "log_interval": at_least(1), "max_new_tokens": at_least(1),
    "sample_interval": at_least(0), "num_samples": at_least(0), "eval_max_examples": at_least(0),
    "warmup_iters": at_least(0), "learning_rate": above(0), "min_lr": at_least(0), "weight_decay": at_least(0),
    "beta1": between(0, 1), "beta2": between(0, 1), "grad_clip": at_least(0), "dropout": between(0, 1),
    "block_size": at_least(1), "n_layer": at_least(1), "n_head": at_least(1), "n_embd": at_least(1),
    "samples_per_prompt": at_least(1), "eval_samples_per_prompt": at_least(1),
    "dtype": one_of("auto", "float32", "bfloat16", "float16"),
}


def check_ranges(config, ranges, sources):
    """ConfigError naming the setting and where it was set, for the first value outside its range (every
    float must also be finite: '1e999' parses as inf)."""
    rules = {**RANGES, **ranges}
    for f in dataclasses.fields(config):
        value, where = getattr(config, f.name), sources.get(f.name, f"the default of {f.name!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {f.name} = {value!r}: expected a finite number")
        if f.name in rules and value is not None:
            ok, expected = rules[f.name]
            if not ok(value):
                raise ConfigError(f"{where}: {f.name} = {value!r}: expected {expected}")


def parse_config(config_cls, argv=None, prog=None, ranges=None):
    """Build a config_cls instance from defaults, then --config FILE, then --key=value flags; then check every
    value against its range (RANGES, and the stage's own `ranges`: {key: (predicate, what is expected)})."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or os.path.basename(sys.argv[0])
    defaults = config_cls()
    valid = [f.name for f in dataclasses.fields(config_cls)]
    values, sources = {}, {}  # sources: where each value was set, for the error messages

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
                sources[key] = path
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
        default, value = getattr(defaults, key), parse_value(text)
        if isinstance(default, str) and value is not None:  # a string setting takes the flag as written:
            value = text  # --bon=1,2,4 is '1,2,4', not a tuple; --out_dir=2024 is '2024'
        values[key] = coerce(f"--{key}", key, value, default)
        sources[key] = f"--{key}"

    config = dataclasses.replace(defaults, **values)
    check_ranges(config, ranges or {}, sources)
    return config


class Stopped(Exception):
    """SIGTERM (a scheduler, torchrun, `kill`), turned into an exception so that the run stops like on Ctrl-C:
    the file being written is removed, the last checkpoint stays."""


_signal_received = None  # the name of the SIGINT / SIGTERM this process got, once it got one


def _raise_on_signal(signum, frame):
    global _signal_received
    _signal_received = signal.Signals(signum).name
    raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(_signal_received)


def stop_if_signalled():
    """Called at the top of every training step. Python runs a signal's handler between any two bytecodes,
    also inside a weakref callback or a __del__ that the garbage collector runs (matplotlib leaves many), and
    an exception raised there cannot propagate: Python prints "Exception ignored in ..." and carries on. The
    handler has noted the signal, so the run stops here instead of training on."""
    if _signal_received == "SIGINT":
        raise KeyboardInterrupt
    if _signal_received is not None:
        raise Stopped(_signal_received)


def _quiet_about_stops(unraisable):
    """sys.unraisablehook: a stop that could not propagate is not an error to print (stop_if_signalled acts
    on it); anything else is printed as Python would."""
    if not issubclass(unraisable.exc_type, (KeyboardInterrupt, Stopped)):
        sys.__unraisablehook__(unraisable)


def run_cli(main):
    """Run a script's main(). A user error (bad config, bad data, a checkpoint that does not fit, a file that
    cannot be read or written, a non-finite number) ends with one line on stderr and exit status 2; Ctrl-C
    and SIGTERM with one line and 128 + the signal's number, after the file being written (if any) is
    removed: every checkpoint already written stays. Set TINYRLHF_TRACEBACK=1 to see the traceback."""
    signal.signal(signal.SIGINT, _raise_on_signal)
    signal.signal(signal.SIGTERM, _raise_on_signal)
    sys.unraisablehook = _quiet_about_stops
    try:
        main()
        # a DistributedDataParallel wrapper sits in a reference cycle, so main()'s return frees neither it nor
        # the gloo process group it holds; left to interpreter shutdown, that teardown now and then aborted a
        # finished torchrun rank ("terminate called without an active exception"). runtime.teardown has the rest.
        gc.collect()
    except (KeyboardInterrupt, Stopped) as e:
        if os.environ.get("TINYRLHF_TRACEBACK"):
            raise
        name = "SIGINT" if isinstance(e, KeyboardInterrupt) else str(e)
        print(f"error: stopped by {name}; the checkpoints written so far are intact", file=sys.stderr)
        sys.exit(128 + signal.Signals[name].value)
    except (ValueError, OSError, FloatingPointError, EOFError) as e:
        if os.environ.get("TINYRLHF_TRACEBACK"):
            raise
        if isinstance(e, OSError) and e.filename and e.strerror:  # "[Errno 28] ..." -> what and where
            e = f"{e.filename}: {e.strerror}"
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
