"""
Writing files so that a crash, a kill -9 or a full disk never leaves a half-written one: every file this
project writes (checkpoints, GPT-2 weights and downloads, data files, the char vocabulary, plots, tables,
reports) goes through atomic_write.

    atomic_write(path, lambda tmp: torch.save(state, tmp))    # any writer that takes a path
    atomic_write_text(path, json.dumps(report))
    atomic_save_figure(fig, path)                             # a matplotlib figure, closed afterwards

The data goes to a temporary file in the same directory (a rename is atomic only within one file system),
is flushed to disk with fsync, and is then renamed over `path`: a reader sees the old file or the new one,
never a mix. The temporary file is created with mode 0o666 minus the umask, like any file the user writes
with open(), and is removed if writing fails.
"""

import os
import re
import secrets


TEMP_NAME = re.compile(r"\..+\.tmp-(\d+)-[0-9a-f]{8}")  # .NAME.tmp-PID-RANDOM


def atomic_write(path, write_fn):
    """Write `path` through write_fn(tmp_path), then rename the finished file into place. Returns path."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the user's normal permissions
    try:
        write_fn(tmp)
        # the bytes must be on disk before the rename makes them the file: otherwise a power cut can leave
        # a renamed but empty file in place of the old, good one
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path, text):
    """A text file (a table, a JSON report, a config) written through atomic_write, as UTF-8."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(path, write)


def atomic_save_figure(fig, path, dpi=100):
    """Save a matplotlib figure as PNG through atomic_write, then close it."""
    import matplotlib.pyplot as plt
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
    return path


def remove_orphaned_temp_files(directory):
    """Delete the temporary files that a process killed mid-write (kill -9, a power cut: nothing can clean up
    after those) left in directory; a file of a process that is still running is left alone. Returns the
    names removed."""
    removed = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        m = TEMP_NAME.fullmatch(name)
        if m and not pid_alive(int(m.group(1))):
            os.remove(os.path.join(directory, name))
            removed.append(name)
    return removed


def pid_alive(pid):
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True
