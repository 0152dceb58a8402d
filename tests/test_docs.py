"""The concept map (docs/concepts.md), the Chinese README (README.zh-CN.md) and the notebooks' links to the map:
every relative link resolves, and a #anchor on a .md file names one of its headings under GitHub's rules; every
function and test the map cites exists in the file it names; the map has 30-40 questions, each answered with
Code, Test and See it lines; the Chinese README's commands are README.md's own, byte for byte, and it lists every
question of the map; the two READMEs link to each other; every <!-- results: PATH --> block equals PATH. Only
files are read and parsed: nothing is run, so the whole module takes well under a second."""

import ast
import glob
import json
import os
import re
from urllib.parse import unquote

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONCEPTS = "docs/concepts.md"
README = "README.md"
README_ZH = "README.zh-CN.md"
NOTEBOOKS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "notebooks", "0*.ipynb")))
NOTEBOOK_LINE = "Questions this notebook answers (docs/concepts.md):"

# [text](target) and ![alt](target); the target ends at the first space (an optional "title" may follow)
LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
RESULTS_START = re.compile(r"^<!-- results: (\S+) -->$")
RESULTS_END = "<!-- /results -->"


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def outside_code(text):
    """The lines of a markdown text that are not inside a fenced code block, as (line number, line)."""
    out, in_fence = [], False
    for i, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            out.append((i, line))
    return out


def headings(text):
    """The text of every ATX heading (# ... to ###### ...) outside code blocks, in order."""
    return [m.group(2).strip().rstrip("#").strip() for _, line in outside_code(text)
            for m in [re.match(r"^(#{1,6})\s+(.*)$", line)] if m]


def github_anchor(heading):
    """GitHub's anchor for a heading (github-slugger): the rendered text (link and code markup dropped),
    lowercased, every character that is not a letter, digit, underscore, hyphen or space removed (letters of any
    script stay: Chinese headings keep their characters), then each space turned into a hyphen."""
    text = LINK.sub(lambda m: m.group(1), heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text):
    """Every anchor GitHub gives a file's headings; a repeated one gets -1, -2, ... in order."""
    seen, out = {}, set()
    for h in headings(text):
        base = github_anchor(h)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def links(text):
    """(line number, link text, target) of every markdown link and image outside code blocks."""
    return [(i, m.group(1), m.group(2)) for i, line in outside_code(text) for m in LINK.finditer(line)]


def is_external(target):
    return re.match(r"^[a-z][a-z0-9+.-]*:", target) is not None  # https:, mailto:, ...


def check_links(where, text, base_dir):
    """A list of messages, one per relative link of `text` (a file in base_dir, relative to ROOT) that does not
    resolve: its file is missing, or its #anchor names no heading of the .md file it points into."""
    problems = []
    for line_no, label, target in links(text):
        if is_external(target):
            continue
        path, _, anchor = target.partition("#")
        path, anchor = unquote(path), unquote(anchor)
        full = os.path.normpath(os.path.join(ROOT, base_dir, path)) if path else os.path.join(ROOT, where)
        if not os.path.exists(full):
            problems.append(f"{where}:{line_no}: link [{label}]({target}): {os.path.relpath(full, ROOT)} does not exist")
            continue
        if anchor and full.endswith(".md"):
            with open(full, encoding="utf-8") as f:
                known = anchors(f.read())
            if anchor not in known:
                problems.append(f"{where}:{line_no}: link [{label}]({target}): no heading of {os.path.relpath(full, ROOT)} "
                                f"has the anchor #{anchor}")
    return problems


def notebook_markdown(rel):
    """The markdown cells of a notebook, each as one text."""
    nb = json.loads(read(rel))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


# ----------------------------------------------------------------------------------------------------------
# the concept map's questions, and the names its Code and Test lines cite

def questions():
    """[(heading, [lines under it up to the next heading])] for every ### question of the concept map."""
    out = []
    for _, line in outside_code(read(CONCEPTS)):
        if re.match(r"^#{1,6}\s", line):
            out.append((line[4:].strip(), []) if line.startswith("### ") else None)
        elif out and out[-1] is not None:
            out[-1][1].append(line)
    return [q for q in out if q is not None]


def defined_names(rel):
    """The names a Python file defines at top level (functions, classes, dataclasses) and its classes' methods."""
    tree = ast.parse(read(rel), filename=rel)
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return names


def cited(line):
    """[(link target, file named, [names])] of a "- Code:" or "- Test:" line: each link's text is a backticked file
    name followed by the backticked names of what it defines."""
    out = []
    for m in LINK.finditer(line):
        ticked = re.findall(r"`([^`]+)`", m.group(1))
        out.append((m.group(2), ticked[0] if ticked else None, ticked[1:]))
    return out


def test_concept_map_has_30_to_40_questions_each_with_an_answer_code_test_and_see_it():
    qs = questions()
    assert 30 <= len(qs) <= 40, f"{CONCEPTS}: {len(qs)} ### questions, expected between 30 and 40"
    seen = set()
    for heading, body in qs:
        assert heading.endswith("?"), f"{CONCEPTS}: question {heading!r} is not phrased as a question (no '?')"
        assert github_anchor(heading) not in seen, f"{CONCEPTS}: question {heading!r} repeats another's anchor"
        seen.add(github_anchor(heading))
        text = [line for line in body if line.strip()]
        kinds = [line.split(":")[0] for line in text if line.startswith("- ")]
        assert kinds == ["- Code", "- Test", "- See it"], \
            f"{CONCEPTS}: question {heading!r} must end with exactly one '- Code:', '- Test:' and '- See it:' line, in that order; has {kinds}"
        answer = [line for line in text if not line.startswith("- ")]
        assert 2 <= len(answer) <= 4, f"{CONCEPTS}: question {heading!r}: the answer has {len(answer)} lines, expected 2-4"
        assert text[:len(answer)] == answer, f"{CONCEPTS}: question {heading!r}: the answer must come before its Code line"
        for line in text[len(answer):]:
            assert links(line), f"{CONCEPTS}: question {heading!r}: {line.split(':')[0][2:]} line has no link: {line!r}"


def test_every_cited_function_and_test_exists_in_the_file_named():
    problems = []
    for heading, body in questions():
        for line in body:
            kind = "Code" if line.startswith("- Code:") else "Test" if line.startswith("- Test:") else None
            if kind is None:
                continue
            for target, rel, names in cited(line):
                if rel is None or not names:
                    problems.append(f"{heading!r} {kind}: link to {target} must read [`file` `name`, ...]")
                    continue
                linked = os.path.normpath(os.path.join(ROOT, os.path.dirname(CONCEPTS), unquote(target.partition("#")[0])))
                if linked != os.path.join(ROOT, rel):
                    problems.append(f"{heading!r} {kind}: the link to {target} does not point at {rel}")
                    continue
                if not os.path.exists(os.path.join(ROOT, rel)):
                    problems.append(f"{heading!r} {kind}: {rel} does not exist")
                    continue
                if kind == "Test" and not (rel.startswith("tests/") and all(n.startswith("test_") for n in names)):
                    problems.append(f"{heading!r} Test: {rel} {names}: a Test line names test functions in tests/")
                if rel.endswith(".ipynb"):
                    continue
                missing = [n for n in names if n not in defined_names(rel)]
                if missing:
                    problems.append(f"{heading!r} {kind}: {rel} defines no {', '.join(missing)}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------------------
# links

@pytest.mark.parametrize("rel", [CONCEPTS, README_ZH])
def test_every_relative_link_resolves(rel):
    problems = check_links(rel, read(rel), os.path.dirname(rel))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("rel", NOTEBOOKS)
def test_notebook_links_resolve_and_name_the_questions_it_answers(rel):
    cells = notebook_markdown(rel)
    problems = [p for cell in cells for p in check_links(rel, cell, os.path.dirname(rel))]
    assert not problems, "\n".join(problems)
    answers = [line for line in cells[0].splitlines() if line.startswith(NOTEBOOK_LINE)]
    assert len(answers) == 1, f"{rel}: the first markdown cell needs one line starting {NOTEBOOK_LINE!r}"
    targets = [target for _, _, target in links(answers[0])]
    assert targets and all(t.startswith("../docs/concepts.md#") for t in targets), \
        f"{rel}: {NOTEBOOK_LINE!r} must be followed by links to questions of docs/concepts.md, got {targets}"
    question_anchors = {github_anchor(h) for h, _ in questions()}
    strays = [t for t in targets if t.partition("#")[2] not in question_anchors]
    assert not strays, f"{rel}: these links are not to ### questions of {CONCEPTS}: {strays}"


def test_the_two_readmes_link_to_each_other():
    for rel, other in [(README_ZH, README), (README, README_ZH)]:
        targets = [os.path.normpath(target.partition("#")[0]) for _, _, target in links(read(rel))]
        assert other in targets, f"{rel} has no link to {other}"


def test_the_chinese_readme_lists_every_question_with_its_anchor_and_code_files():
    zh = read(README_ZH)
    zh_lines = [line for _, line in outside_code(zh)]
    problems = []
    for heading, body in questions():
        anchor = f"docs/concepts.md#{github_anchor(heading)}"
        rows = [line for line in zh_lines if any(target == anchor for _, _, target in links(line))]
        if len(rows) != 1:
            problems.append(f"{README_ZH}: {len(rows)} lines link to {anchor} ({heading!r}); expected one")
            continue
        code_files = [rel for line in body if line.startswith("- Code:") for _, rel, _ in cited(line)]
        row_targets = {os.path.normpath(target) for _, _, target in links(rows[0])}
        missing = [rel for rel in code_files if rel not in row_targets]
        if missing:
            problems.append(f"{README_ZH}: the line for {heading!r} does not link the code files {missing}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------------------
# commands and results copied from README.md

def bash_blocks(text):
    """The contents of every ```bash fenced block, in order, each as one string of its lines."""
    return [m.group(1) for m in re.finditer(r"^```bash\n(.*?)^```$", text, flags=re.S | re.M)]


def section(text, heading_pattern):
    """The text under the first ## heading matching heading_pattern, up to the next ## heading."""
    m = re.search(rf"^## [^\n]*{heading_pattern}[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"no ## heading matching {heading_pattern!r}"
    return m.group(1)


def test_the_chinese_quick_start_is_readmes_byte_for_byte():
    english = bash_blocks(section(read(README), "Quick start"))
    chinese = bash_blocks(section(read(README_ZH), "快速开始"))
    assert english and chinese, f"a ```bash block under the quick start heading of {README} and of {README_ZH}"
    assert chinese[0] == english[0], (f"{README_ZH}'s quick-start commands differ from {README}'s:\n"
                                      f"{chinese[0]}\n-- against --\n{english[0]}")


def test_every_command_block_of_the_chinese_readme_is_one_of_readmes():
    english = bash_blocks(read(README))
    strays = [block for block in bash_blocks(read(README_ZH)) if block not in english]
    assert not strays, f"{README_ZH}: these ```bash blocks are not copied from {README}:\n" + "\n--\n".join(strays)


def results_blocks(rel):
    """[(line number, PATH, [lines between the markers])] of every <!-- results: PATH --> ... <!-- /results --> block."""
    out, current = [], None
    for i, line in enumerate(read(rel).splitlines(), 1):
        m = RESULTS_START.match(line)
        if m:
            assert current is None, f"{rel}:{i}: a results block opens inside another"
            current = (i, m.group(1), [])
        elif line == RESULTS_END:
            assert current is not None, f"{rel}:{i}: {RESULTS_END} closes no block"
            out.append(current)
            current = None
        elif current is not None:
            current[2].append(line)
    assert current is None, f"{rel}:{current[0]}: the results block for {current[1]} is never closed"
    return out


@pytest.mark.parametrize("rel", [README, README_ZH])
def test_every_results_block_equals_the_file_it_names(rel):
    blocks = results_blocks(rel)
    if rel == README_ZH:
        assert blocks, f"{README_ZH} has no <!-- results: PATH --> block"
    for line_no, path, lines in blocks:
        full = os.path.join(ROOT, os.path.dirname(rel), path)
        assert os.path.exists(full), f"{rel}:{line_no}: results block names {path}, which does not exist"
        with open(full, encoding="utf-8") as f:
            expected = f.read().splitlines()
        assert lines == expected, (f"{rel}:{line_no}: the block for {path} is not that file's lines; replace it with "
                                   f"them exactly")


def test_the_chinese_readme_has_no_measured_number_outside_results_blocks():
    """A number copied by hand would drift from the run it came from: the measured ones live in results blocks,
    whose test above keeps them equal to their files."""
    in_block, problems = False, []
    lines = dict(outside_code(read(README_ZH)))
    for i, line in enumerate(read(README_ZH).splitlines(), 1):
        if RESULTS_START.match(line) or line == RESULTS_END:
            in_block = line != RESULTS_END
            continue
        if in_block or i not in lines:
            continue
        text = re.sub(r"`[^`]*`", "", LINK.sub(lambda m: m.group(1), line))  # commands and link targets aside
        for number in re.findall(r"(?<![\w.])[+-]?\d+\.\d+(?![\w.])", text):
            problems.append(f"{README_ZH}:{i}: {number} outside a results block")
    assert not problems, "\n".join(problems)


def test_every_results_table_equals_the_results_json_it_was_written_from():
    """A table.md in a results block is evaluate.py's rendering of the results.json beside it: render it again from
    that file and compare, so no number in either README can differ from the results file it came from."""
    from data.toy.judge import format_table
    from evaluate import seeds_table_md
    paths = {path for rel in (README, README_ZH) for _, path, _ in results_blocks(rel) if path.endswith("table.md")}
    assert paths
    for path in sorted(paths):
        table = read(path)
        results = json.loads(read(os.path.join(os.path.dirname(path), "results.json")))
        if "vs_baseline" in results:  # evaluate.py --aggregate
            rendered = seeds_table_md(results, len(results["seeds"]))
        else:
            columns = [c.strip() for c in table.splitlines()[0].strip("|").split("|")][1:]
            rows = {**({"demonstrations": results["demonstrations"]} if results.get("demonstrations") else {}), **results["models"]}
            rendered = format_table(rows, columns)
        assert rendered + "\n" == table, f"{path}: differs from {os.path.dirname(path)}/results.json"
