"""Where the shipped data lives, and how names on the command line resolve to files.

Shipped folders (``search_spaces/``, ``recipes/``, ``latency_db/``) sit at the repository
root, beside the package; an editable install (``pip install -e .``) finds them there.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ARCH_DIR = PROJECT_ROOT / "recipes" / "archs"
SPACE_DIR = PROJECT_ROOT / "search_spaces"
LATENCY_DIR = PROJECT_ROOT / "latency_db"

ARCH_SUFFIXES = (".txt", ".yaml", ".yml", ".json")


def shipped_names(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in suffixes)


def resolve_file(text: str, folder: Path, suffixes: tuple[str, ...], what: str) -> Path:
    """``text`` as an existing path, else as the name of a shipped file in ``folder``."""
    path = Path(text)
    if path.is_file():
        return path
    for suffix in suffixes:
        candidate = folder / f"{text}{suffix}"
        if candidate.is_file():
            return candidate
    names = ", ".join(shipped_names(folder, suffixes)) or "none shipped"
    raise UserError(text, "", f"no such file, nor a shipped {what} of that name ({names})")


def resolve_arch_path(text: str) -> Path:
    return resolve_file(text, ARCH_DIR, ARCH_SUFFIXES, "architecture")


def resolve_space_path(text: str) -> Path:
    return resolve_file(text, SPACE_DIR, (".yaml", ".yml"), "search space")
