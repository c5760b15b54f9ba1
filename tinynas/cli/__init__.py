"""The ``tinynas`` command: one parser, one module per command group.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. Commands stay thin: parse, call the library, print.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from ..errors import UserError
from . import arch_commands
from . import cfg_commands
from . import data_commands
from . import design_commands
from . import detect_commands
from . import latency_commands
from . import quant_commands
from . import search_commands
from . import train_commands

COMMAND_MODULES = [arch_commands, data_commands, design_commands, detect_commands, latency_commands, quant_commands,
                   search_commands, train_commands, cfg_commands]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinynas",
        description="Zero-shot search of real-time object detectors for a chip and a latency budget.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _version() -> str:
    from ..version import __version__
    return f"tinynas {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (argparse stops collecting positionals at the first option).
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        return _fail(str(err))
    except OSError as err:
        # The OS refusing a user's path (exists, is a folder, no permission, disk full) is
        # their input, not our bug: name the path and the reason.
        return _fail(_os_error_text(err))
    except KeyboardInterrupt:
        print("tinynas: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if isinstance(err, MemoryError) or _allocation_failed(err):
            # Sizes are checked before work starts; this catches what an estimate missed.
            return _fail("out of memory: the input, batch or model is too large for this machine")
        traceback.print_exc()
        print("tinynas: internal error (a bug in tinynas, not in your input); please report it to the "
              "tinynas maintainers with the command line and the traceback above", file=sys.stderr)
        return 1


def _allocation_failed(err: Exception) -> bool:
    """torch reports a failed allocation as a RuntimeError (CUDA: its OutOfMemoryError subclass)."""
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def _fail(text: str) -> int:
    print(f"tinynas: error: {' '.join(text.split())}", file=sys.stderr)
    return 2


def _os_error_text(err: OSError) -> str:
    reason = err.strerror or err.__class__.__name__
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


if __name__ == "__main__":
    sys.exit(main())
