"""Every flag of every subcommand, given values of the wrong kind: one line and exit 2, never a
traceback. The subcommands are read from the parser itself, so a new flag is fuzzed the day it
is added. Positionals name files that do not exist, so each command stops at its first check
(the flags' own parsing and range checks come before any file is read)."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from tinynas.cli import build_parser, main

BAD_VALUES = ("abc", "nan", "-1", "", "1e400", "a=b")


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, prefix + (name,))
            return
    yield prefix, parser


CASES = []
for _path, _parser in _commands(build_parser()):
    _positionals = [a for a in _parser._actions if not a.option_strings and a.nargs not in ("*", "?")
                    and not isinstance(a, argparse._SubParsersAction)]
    _options = [a for a in _parser._actions if a.option_strings and a.nargs != 0
                and not isinstance(a, argparse._HelpAction)]
    for _action in _options:
        CASES.append((_path, len(_positionals), _action.option_strings[-1]))


@pytest.mark.parametrize("path, positionals, flag", CASES, ids=[" ".join(p) + " " + f for p, _, f in CASES])
def test_a_wrong_value_for_any_flag_is_one_line(path, positionals, flag, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for value in BAD_VALUES:
        argv = [*path, *(str(tmp_path / f"missing-{i}.yaml") for i in range(positionals)), flag, value]
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
        except SystemExit as exit_:  # argparse's own refusal: usage plus one error line
            code = exit_.code
        text = err.getvalue()
        assert "Traceback" not in text and "internal error" not in text, (argv, text[-600:])
        assert code in (0, 2), (argv, code, text[-600:])
        if code == 2:
            assert text.strip().splitlines()[-1].startswith(("tinynas: error:", "tinynas ")), (argv, text[-300:])
