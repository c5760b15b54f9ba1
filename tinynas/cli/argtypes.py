"""argparse value types shared by the command modules."""

from __future__ import annotations

import argparse

from ..renamed import note_renamed


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class _OldSpelling(argparse.Action):
    """A flag's former spelling: sets the new flag's value and says the new name once."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        note_renamed("command line", option_string, self.new)
        setattr(namespace, self.dest, values)


def old_spellings(parser: argparse.ArgumentParser, action: argparse.Action, *old: str) -> argparse.Action:
    """Accept ``old`` flags for ``action`` (returned by ``add_argument``) for one release, hidden
    from the help; the value is converted and checked as the new flag's."""
    for spelling in old:
        parser.add_argument(spelling, dest=action.dest, type=action.type, choices=action.choices,
                            metavar=action.metavar, action=_OldSpelling, new=action.option_strings[0],
                            default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return action
