"""Write docs/reference/cli.md from the ``tinynas`` argparse parser.

    OMP_NUM_THREADS=1 .venv/bin/python docs/gen_cli_reference.py

The page is committed; tests/test_docs.py renders it again in memory and fails when the parser
and the page disagree, so a changed option shows up as a failing test, not as a stale page.
The usage lines are composed here rather than taken from argparse's own formatter, whose line
wrapping follows the terminal's width and the Python version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reference" / "cli.md"
REGENERATE = "OMP_NUM_THREADS=1 .venv/bin/python docs/gen_cli_reference.py"

_MARKDOWN_SPECIALS = str.maketrans({
    "\\": "\\\\", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "|": "\\|",
    "<": "&lt;", ">": "&gt;", "&": "&amp;", "#": "\\#",
})


def _escape(text: str) -> str:
    """Help text as Markdown: code spans (between backticks) kept, everything else literal."""
    pieces = " ".join(text.split()).split("`")
    if len(pieces) % 2 == 0:  # an unpaired backtick: nothing is code
        return "\\`".join(p.translate(_MARKDOWN_SPECIALS) for p in pieces)
    return "`".join(p if i % 2 else p.translate(_MARKDOWN_SPECIALS) for i, p in enumerate(pieces))


def _subcommands(parser: argparse.ArgumentParser):
    """(name, help, subparser) of each subcommand, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name), sub


def _documented(action: argparse.Action) -> bool:
    return not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and \
        action.help is not argparse.SUPPRESS


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _arguments(action: argparse.Action) -> str:
    """What follows the option string, written as argparse's usage writes it."""
    if action.nargs == 0:
        return ""
    m = _metavar(action)
    if action.nargs is None:
        return m
    if action.nargs == "?":
        return f"[{m}]"
    if action.nargs == "*":
        return f"[{m} ...]"
    if action.nargs == "+":
        return f"{m} [{m} ...]"
    if action.nargs == argparse.REMAINDER:
        return "..."
    return " ".join([m] * int(action.nargs))


def _usage(parser: argparse.ArgumentParser) -> str:
    parts = [parser.prog]
    for action in parser._actions:
        if not _documented(action) and not isinstance(action, argparse._SubParsersAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            parts.append("COMMAND ...")
        elif action.option_strings:
            text = " ".join(x for x in (action.option_strings[0], _arguments(action)) if x)
            parts.append(text if action.required else f"[{text}]")
        else:
            parts.append(_arguments(action))
    return " ".join(parts)


def _help(action: argparse.Action, prog: str) -> str:
    if not action.help:
        return ""
    params = dict(vars(action), prog=prog)
    params = {k: v for k, v in params.items() if v is not argparse.SUPPRESS}
    for key, value in list(params.items()):
        if hasattr(value, "__name__"):
            params[key] = value.__name__
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    return action.help % params


def _default(action: argparse.Action) -> str:
    value = action.default
    if value is None or value is argparse.SUPPRESS or action.nargs == 0:
        return ""
    if isinstance(value, (list, tuple)):
        if not value:
            return ""
        value = ",".join(str(v) for v in value)
    return f"`{value}`" if str(value) != "" else ""


def _option_line(action: argparse.Action, prog: str) -> str:
    if action.option_strings:
        arg = _arguments(action)
        name = ", ".join(f"{o} {arg}".strip() for o in action.option_strings)
    else:
        name = _arguments(action)
    line = f"- `{name}`"
    help_text = _help(action, prog)
    default = "" if "default" in help_text else _default(action)
    if default:
        line += f" (default {default})"
    if action.required and action.option_strings:
        line += " (required)"
    text = _escape(help_text)
    return line + (f": {text}" if text else "")


def _section(parser: argparse.ArgumentParser, help_text: str | None, depth: int) -> list[str]:
    lines = [f"{'#' * depth} `{parser.prog}`", ""]
    if help_text:
        lines += [_escape(help_text[0].upper() + help_text[1:]), ""]
    lines += ["```text", f"usage: {_usage(parser)}", "```", ""]
    if parser.description:
        if parser.formatter_class is argparse.RawDescriptionHelpFormatter:
            lines += ["```text", *parser.description.strip("\n").splitlines(), "```", ""]
        else:
            lines += [_escape(parser.description), ""]
    options = [a for a in parser._actions if _documented(a)]
    if options:
        lines += [_option_line(a, parser.prog) for a in options] + [""]
    for name, sub_help, sub in _subcommands(parser):
        lines += _section(sub, sub_help, min(depth + 1, 4))
    return lines


def render(parser: argparse.ArgumentParser | None = None) -> str:
    if parser is None:
        from tinynas.cli import build_parser
        parser = build_parser()
    lines = [
        "# CLI reference",
        "",
        f"Generated from the `tinynas` argument parser by `docs/gen_cli_reference.py`; do not edit by "
        f"hand. After changing an option, run `{REGENERATE}`.",
        "",
        "Commands that take `key=value` settings accept them after their options too.",
        "",
        "```text",
        f"usage: {_usage(parser)}",
        "```",
        "",
        _escape(parser.description or ""),
        "",
    ]
    for name, help_text, sub in _subcommands(parser):
        lines += _section(sub, help_text, 2)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
