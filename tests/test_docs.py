"""The docs cannot drift from the code: the CLI reference is the parser's, every `tinynas ...`
command line of README and docs/ parses, every relative link resolves, the site's nav lists
every page, the README stays short, and the site builds with `mkdocs build --strict`."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
# docs/hooks.py shows benchmarks/RESULTS.md on the site as this page.
GENERATED_PAGES = {"results.md": RESULTS}
README_LIMIT = 12 * 1024

SHELL_FENCES = {"bash", "console", "sh", "shell"}
FENCE = re.compile(r"^\s*```(\S*)")
SEPARATORS = {"&&", "||", ";", "|", "&"}

# Command lines that are not parsed, each with the reason. Empty: every line parses as written.
SKIPPED: dict[str, str] = {}


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", DOCS / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc_files() -> list[Path]:
    return [README, RESULTS, *sorted(DOCS.rglob("*.md"))]


def _command_names() -> set[str]:
    from tinynas.cli import build_parser
    parser = build_parser()
    return {name for action in parser._subparsers._group_actions for name in action.choices}


def _logical_lines(lines: list[str]):
    """(line number, text) with backslash continuations joined."""
    buffer, start = "", None
    for number, line in enumerate(lines, 1):
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        yield start, buffer + line
        buffer, start = "", None
    if buffer:
        yield start, buffer


def _tinynas_argvs(text: str):
    """Each `tinynas` invocation on one shell line, as its argument list (without `tinynas`)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as err:
        raise AssertionError(f"cannot split {text!r}: {err}") from err
    segment: list[str] = []
    for token in tokens + [";"]:
        if token not in SEPARATORS:
            segment.append(token)
            continue
        words = segment[1:] if segment[:1] == ["$"] else segment
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
            words = words[1:]  # VAR=value before the program
        if words[:3] in (["python", "-m", "tinynas"], ["python3", "-m", "tinynas"]):
            words = words[2:]
        if words and Path(words[0]).name == "tinynas":
            yield words[1:]
        segment = []


def command_lines() -> list[tuple[str, str, list[str]]]:
    """(place, line, argv) of every command line that runs tinynas in README, RESULTS and docs/.

    In a bash/console/sh fence every line counts; in any other fence a line starting with
    `tinynas ` or `$ tinynas `; outside fences a line starting with `$ tinynas `, or with
    `tinynas COMMAND` where COMMAND is one of its commands (so prose such as "tinynas designs
    detectors" is not taken for a command)."""
    commands = _command_names()
    found = []
    for path in _doc_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        fence = None
        plain: list[tuple[int, str, str | None]] = []  # (number, line, fence language or None)
        for number, line in enumerate(lines, 1):
            match = FENCE.match(line)
            if match:
                fence = None if fence is not None else match.group(1).lower()
                plain.append((number, "", None))
                continue
            plain.append((number, line, fence))
        for start, text in _logical_lines([line for _, line, _ in plain]):
            language = plain[start - 1][2]
            stripped = text.strip()
            words = stripped.split()
            if language in SHELL_FENCES:
                wanted = "tinynas" in stripped
            elif language is not None:
                wanted = stripped.startswith(("tinynas ", "$ tinynas "))
            else:
                wanted = stripped.startswith("$ tinynas ") or (
                    len(words) > 1 and words[0] == "tinynas" and words[1] in commands)
            if not wanted:
                continue
            place = f"{path.relative_to(ROOT)}:{start}"
            if stripped in SKIPPED:
                continue
            for argv in _tinynas_argvs(stripped):
                found.append((place, stripped, argv))
    return found


def _parse(parser, argv: list[str]) -> str | None:
    """None when the line parses as `tinynas` would parse it, else argparse's message.

    The rule for leftovers is main()'s: key=value settings may follow options on a command that
    takes overrides. Nothing is run: only the parser is called."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            args, extra = parser.parse_known_args(argv)
    except SystemExit:
        return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else "exit"
    if extra and not (hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra)):
        return f"unrecognized arguments: {' '.join(extra)}"
    return _unknown_key(args, [*(getattr(args, "overrides", None) or []), *extra])


def _unknown_key(args, settings: list[str]) -> str | None:
    """A key=value whose key is no setting of a command whose settings are one dataclass."""
    from dataclasses import fields

    from tinynas.api import DesignSpec, SearchRecipe
    from tinynas.cli.cfg_commands import settings_of

    found = settings_of(args.command, args)
    cls = DesignSpec if args.command == "design" else SearchRecipe if args.command == "search" else \
        found[0] if found else None
    if cls is None:  # train and eval: dotted recipe keys, checked when the recipe is read
        return None
    known = {f.name for f in fields(cls)}
    unknown = [text.split("=", 1)[0] for text in settings if "=" in text and text.split("=", 1)[0] not in known]
    return f"unknown settings: {', '.join(unknown)}" if unknown else None


def test_cli_reference_matches_the_parser():
    generator = _generator()
    committed = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert generator.render() == committed, (
        f"docs/reference/cli.md is out of date with tinynas/cli; regenerate it with `{generator.REGENERATE}`")


def test_every_command_line_in_the_docs_parses():
    from tinynas.cli import build_parser
    lines = command_lines()
    assert len(lines) >= 60, f"only {len(lines)} command lines found: the collector lost them"
    places = {place.split(":")[0] for place, _, _ in lines}
    assert {"README.md", "docs/commands/search.md", "docs/latency.md"} <= places
    failures = []
    for place, text, argv in lines:
        error = _parse(build_parser(), argv)
        if error:
            failures.append(f"{place}: {text}\n    -> {error}")
    assert not failures, "command lines the parser refuses:\n" + "\n".join(failures)


def test_the_collector_reads_continuations_comments_and_chains():
    argvs = list(_tinynas_argvs("python3 -m venv .venv && .venv/bin/tinynas search --space k1kx  # a comment"))
    assert argvs == [["search", "--space", "k1kx"]]
    joined = dict(_logical_lines(["tinynas latency build --space k1kx \\", "    --out t.csv", "echo"]))
    assert list(_tinynas_argvs(joined[1])) == [["latency", "build", "--space", "k1kx", "--out", "t.csv"]]
    assert list(_tinynas_argvs("$ tinynas info damoyolo-s")) == [["info", "damoyolo-s"]]


def test_a_wrong_command_line_is_caught():
    from tinynas.cli import build_parser
    assert _parse(build_parser(), ["search", "--no-such-flag"]) is not None
    assert _parse(build_parser(), ["info", "damoyolo-s", "population=3"]) is not None
    assert _parse(build_parser(), ["search", "--space", "k1kx", "population=3"]) is None


def test_readme_is_at_most_12_kib():
    size = README.stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes, over {README_LIMIT}: move sections into docs/"


def test_readme_keeps_the_test_command_that_ci_runs():
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- test-command -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert ".venv/bin/python -m pytest -q" in block and block.count("\n") == 1


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _links(path: Path):
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)  # fenced code
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code
    for match in LINK.finditer(text):
        yield match.group(1)


def _target(page: Path, link: str) -> Path:
    base = link.split("#", 1)[0]
    target = (page.parent / base).resolve()
    for name, real in GENERATED_PAGES.items():
        if target == (DOCS / name).resolve():
            return real
    return target


def test_every_relative_link_and_image_resolves():
    missing = []
    checked = 0
    for page in _doc_files():
        for link in _links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith("#"):
                continue  # absolute URLs and anchors within the page
            checked += 1
            if not _target(page, link).exists():
                missing.append(f"{page.relative_to(ROOT)}: {link}")
    assert checked > 50
    assert not missing, "links to files that do not exist:\n" + "\n".join(missing)


def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_mkdocs_nav_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = _nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice in mkdocs.yml's nav"
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")} | set(GENERATED_PAGES)
    assert set(listed) == pages, (f"not in mkdocs.yml's nav: {sorted(pages - set(listed))}; "
                                  f"in the nav but missing: {sorted(set(listed) - pages)}")


def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()
    assert (tmp_path / "site" / "results" / "index.html").exists()
