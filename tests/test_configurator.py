from dataclasses import dataclass

import pytest

from configurator import ConfigError, parse_config


@dataclass
class Example:
    learning_rate: float = 3e-4  # AdamW step size
    max_iters: int = 100  # optimizer steps
    out_dir: str = "out/example"  # where checkpoints go
    compile: bool = False  # torch.compile the model
    init_from: str = None  # a checkpoint directory, or None for scratch


def write(tmp_path, text):
    path = tmp_path / "cfg.py"
    path.write_text(text)
    return str(path)


def test_precedence_defaults_file_flags(tmp_path):
    path = write(tmp_path, "import math\nmax_iters = 7\nlearning_rate = 1e-3\n_private = 'ignored'\n")
    cfg = parse_config(Example, ["--config", path, "--max_iters=9"])
    assert (cfg.max_iters, cfg.learning_rate, cfg.out_dir) == (9, 1e-3, "out/example")
    assert parse_config(Example, []).max_iters == 100


def test_int_for_float_none_default_and_strings():
    cfg = parse_config(Example, ["--learning_rate=1", "--init_from=out/sft", "--out_dir=out/x", "--compile=True"])
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.init_from == "out/sft" and cfg.out_dir == "out/x" and cfg.compile is True


def test_unknown_keys_name_the_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"--lerning_rate: unknown config key 'lerning_rate' \(did you mean learning_rate\?\)"):
        parse_config(Example, ["--lerning_rate=0.1"])
    path = write(tmp_path, "max_iter = 5\n")
    with pytest.raises(ConfigError, match=r"cfg.py: unknown config key 'max_iter' \(did you mean max_iters\?\)"):
        parse_config(Example, ["--config", path])


def test_type_errors_and_malformed_flags():
    with pytest.raises(ConfigError, match="key 'max_iters' expects int, got 'abc'"):
        parse_config(Example, ["--max_iters=abc"])
    with pytest.raises(ConfigError, match="key 'max_iters' expects int, got 2.5"):
        parse_config(Example, ["--max_iters=2.5"])
    with pytest.raises(ConfigError, match="expected --key=value"):
        parse_config(Example, ["max_iters=3"])
    with pytest.raises(ConfigError, match="no such file"):
        parse_config(Example, ["--config", "does/not/exist.py"])


def test_help_lists_every_key_with_its_comment(capsys):
    with pytest.raises(SystemExit) as e:
        parse_config(Example, ["--help"], prog="example.py")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--learning_rate=0.0003  # AdamW step size" in out
    assert "--init_from=None  # a checkpoint directory, or None for scratch" in out


def test_a_string_setting_takes_a_flag_as_written():
    """--key=1,2,4 for a string field is the string '1,2,4' (Python would read a tuple); None stays None."""
    from dataclasses import dataclass

    @dataclass
    class C:
        out_dir: str = "out/x"
        ns: str = ""

    config = parse_config(C, ["--ns=1,2,4", "--out_dir=2024"])
    assert config.ns == "1,2,4" and config.out_dir == "2024"
    assert parse_config(C, ["--ns=None"]).ns is None
