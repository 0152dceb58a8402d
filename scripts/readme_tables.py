"""Copy every results table into the READMEs: each <!-- results: PATH --> ... <!-- /results --> block of README.md and
README.zh-CN.md gets PATH's lines (a table.md that evaluate.py wrote), so neither README's numbers are typed by hand.

    python scripts/readme_tables.py            # rewrite the blocks from their files
    python scripts/readme_tables.py --check    # exit 1 naming each block that differs from its file (tests/test_docs.py)
"""

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from atomic_io import atomic_write_text  # noqa: E402  (the repository root is on the path only now)

READMES = ("README.md", "README.zh-CN.md")
BLOCK = re.compile(r"^(<!-- results: (\S+) -->\n)(.*?)^(<!-- /results -->)$", re.M | re.S)


def synced(text):
    """(text with every results block replaced by its file's content, the paths of the blocks that changed)."""
    changed = []
    def fill(m):
        with open(os.path.join(ROOT, m.group(2)), encoding="utf-8") as f:
            content = f.read()
        if content != m.group(3):
            changed.append(m.group(2))
        return m.group(1) + content + m.group(4)
    return BLOCK.sub(fill, text), changed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs from its file")
    args = parser.parse_args()
    stale = []
    for name in READMES:
        path = os.path.join(ROOT, name)
        with open(path, encoding="utf-8") as f:
            text, changed = synced(f.read())
        stale += [f"{name}: the block of {p} differs from the file" for p in changed]
        if changed and not args.check:
            atomic_write_text(path, text)
    print("\n".join(stale) or "every results block equals its file")
    sys.exit(1 if stale and args.check else 0)


if __name__ == "__main__":
    main()
