"""Every command in README.md and docs/*.md runs as pasted.

Each `skinray ...` command of a fenced ``bash`` block (also `.venv/bin/skinray`, `python jobs/X.py`
and what `ray job submit ... --` runs), and each `.venv/bin/skinray ...` code span of the text,
parses with the CLI's own argument parser (nothing runs). No command is written in optional-flag
notation (`[--gpu]`), and no `a|b` of choices turns a command into a pipeline (`| png`). What the
commands write in the checkout (outputs, runs, data, curl's files) is git-ignored.
Placeholders the docs name (`JOB_ID`, `ARCHIVE`, `$PWD/...`) are allowed where the flag takes a
string, or a number (`--workers N`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from skinray.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKINRAY = ("skinray", ".venv/bin/skinray")
PYTHON = ("python", "python3", ".venv/bin/python")
FILTERS = ("head", "tail", "grep", "jq", "less", "wc", "sort", "tee", "python", "python3")  # after a |
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")  # JOB_ID, ARCHIVE, N
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}
REDIRECTS = {">", ">>", "<", ">&", "&>"}


def bash_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, logical line) of every fenced bash block; continuation lines joined."""
    lines, out, in_bash, pending, start = text.splitlines(), [], False, "", 0
    for number, line in enumerate(lines, 1):
        fence = re.match(r"\s*```(\w*)", line)
        if fence:
            in_bash = not in_bash and fence.group(1) in ("bash", "sh", "shell", "console")
            continue
        if not in_bash:
            continue
        start = start or number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending, start = "", 0
    return out


def code_spans(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every `.venv/bin/skinray ...` code span outside fenced blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            out += [(number, span) for span in re.findall(r"`(\.venv/bin/skinray [^`]+)`", line)]
    return out


def commands(line: str) -> list[tuple[str, list[str]]]:
    """The simple commands of one shell line: (the operator before it, its words), redirections
    and leading VAR=value assignments dropped; what `ray job submit ... --` runs is a command too."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    out, words, before, skip = [], [], "", False
    for token in [*lexer, ";"]:
        if skip:
            skip = False
        elif token in REDIRECTS:
            skip = True
        elif token in SEPARATORS:
            if words:
                out.append((before, words))
            words, before = [], token
        elif words or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", token):
            words.append(token)
    for _, words in list(out):
        if words[0].endswith("ray") and words[1:3] == ["job", "submit"] and "--" in words:
            out.append(("--", words[words.index("--") + 1:]))
    return out


def _job_argv(script: str, rest: list[str]) -> list[str] | None:
    """`python jobs/train.py ARGS` is `skinray train ARGS` (jobs/enhance.py: less its path policy)."""
    match = re.fullmatch(r"jobs/(\w+)\.py", script)
    if not match:
        return None
    if match.group(1) == "enhance":
        spec = importlib.util.spec_from_file_location("docs_jobs_enhance", ROOT / "jobs" / "enhance.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # defines split_roots; its main runs only as __main__
        rest = module.split_roots(rest)[0]
    return [match.group(1), *rest]


def skinray_argv(words: list[str]) -> list[str] | None:
    if words[0] in SKINRAY:
        return words[1:]
    if words[0] in PYTHON and len(words) > 1:
        return _job_argv(words[1], words[2:])
    return None


def _documented() -> list[tuple[str, str]]:
    """(where, shell line) of every command line of the docs, 'README.md:12'."""
    found = []
    for page in PAGES:
        text, name = page.read_text(encoding="utf-8"), str(page.relative_to(ROOT))
        found += [(f"{name}:{n}", line) for n, line in bash_blocks(text) + code_spans(text)]
    return found


DOCUMENTED = _documented()
SKINRAY_LINES = [(where, line) for where, line in DOCUMENTED
                 if any(skinray_argv(words) is not None for _, words in commands(line))]


@functools.cache
def _parser():
    return build_parser()


def _parse(argv: list[str]) -> str:
    """'' when argparse accepts ``argv``, else its error message."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            _parser().parse_args(argv)
        except SystemExit as exc:
            return stderr.getvalue().strip().splitlines()[-1] if exc.code else ""
    return ""


def parse_error(argv: list[str]) -> str:
    """Parse as written; a placeholder where a number goes (`--workers N`) is given one."""
    error = _parse(argv)
    bad = re.search(r"invalid (?:int|float) value: '([^']*)'", error)
    while bad and PLACEHOLDER.fullmatch(bad.group(1)):
        argv = ["1" if word == bad.group(1) else word for word in argv]
        error = _parse(argv)
        bad = re.search(r"invalid (?:int|float) value: '([^']*)'", error)
    return error


def test_the_docs_have_commands_to_check():
    # The pages exist and their blocks are found: a change in how they are written that hid every
    # command from this test would fail here.
    assert len(SKINRAY_LINES) >= 20, SKINRAY_LINES
    subcommands = {skinray_argv(w)[0] for _, line in SKINRAY_LINES for _, w in commands(line)
                   if skinray_argv(w)}
    assert {"synth", "train", "enhance", "evaluate", "tune", "serve", "info", "export"} <= subcommands


@pytest.mark.parametrize("where, line", SKINRAY_LINES, ids=[where for where, _ in SKINRAY_LINES])
def test_documented_skinray_command_parses(where, line):
    for _, words in commands(line):
        argv = skinray_argv(words)
        if argv is not None:
            error = parse_error(argv)
            assert not error, f"{where}: `{' '.join(words)}` does not parse as pasted: {error}"


@pytest.mark.parametrize("where, line", DOCUMENTED, ids=[where for where, _ in DOCUMENTED])
def test_documented_line_has_no_optional_flag_notation(where, line):
    for before, words in commands(line):
        brackets = [w for w in words if w.startswith("[") or w.endswith("]")]
        assert not brackets, f"{where}: {brackets} is optional-flag notation; put the variant in a comment"
        if before == "|":  # `--format same|png|jpeg` pasted is a pipeline into `png`
            program = words[0]
            assert program in FILTERS or shutil.which(program), \
                f"{where}: `| {program}` pipes into a program that does not exist; `a|b` choices go in a comment"


def test_the_checks_catch_the_notation_they_are_for():
    pasted = ".venv/bin/skinray enhance data/photos out [--model runs/mine] [--format same|png|jpeg]"
    assert parse_error(skinray_argv(commands(pasted)[0][1])) != ""
    assert [before for before, _ in commands(pasted)] == ["", "|", "|"]  # `| png`, `| jpeg]`
    assert parse_error(["train", "--workers", "N", "--data", "ARCHIVE"]) == ""
    assert "invalid int value: 'n'" in parse_error(["train", "--workers", "n"])
    assert commands("RAY_AUTH_MODE=token ray job submit --address A -- python jobs/train.py --lr 0.1")[-1] == \
        ("--", ["python", "jobs/train.py", "--lr", "0.1"])
    assert skinray_argv(["python", "jobs/enhance.py", "--batch-roots", "/r", "in", "out"]) == ["enhance", "in", "out"]


# Where each command writes: the parsed argument (a subcommand's dest) or the flag's value.
WRITES = {"synth": "out", "enhance": "output", "evaluate": "out", "export": "out", "ingest": "out",
          "train": "storage", "tune": "storage", "demo": "out"}


def written_paths(words: list[str]) -> list[str]:
    """The local paths a documented command writes, relative to the repository root."""
    argv, found = skinray_argv(words), []
    if argv is not None and argv[0] in WRITES and not parse_error(argv):
        found.append(getattr(_parser().parse_args(argv), WRITES[argv[0]]) or "")
        found += [w.split("=", 1)[1] for w in argv if w.startswith("train.storage=")]
    elif words[0] == "curl":
        found += [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-o", "--output")]
    return [p.removeprefix("$PWD/") for p in found if p and "://" not in p and not p.startswith(("/", "$"))]


def test_what_the_documented_commands_write_is_git_ignored():
    if not (ROOT / ".git").exists() or not shutil.which("git"):
        pytest.skip("not a git checkout")
    written = {p: where for where, line in DOCUMENTED for _, words in commands(line) for p in written_paths(words)}
    assert {"outputs/enhanced.png", "runs", "data/synth"} <= set(written), written
    # PATH/_: what is written at PATH or under it (git's "runs/" is a folder's pattern)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, text=True,
                             input="".join(f"{p}/_\n" for p in written), capture_output=True).stdout.split()
    tracked = {p for p in written if f"{p}/_" not in ignored}
    assert not tracked, {p: f"written by the command at {written[p]}, not git-ignored" for p in tracked}
