import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPACE_NAMES = ["k1kx", "kxkx", "k1kxk1", "k1dwk1"]
DAMOYOLO = ["t", "s", "m", "l"]


@pytest.fixture
def rng():
    return random.Random(1234)


def space_path(name: str) -> Path:
    return ROOT / "search_spaces" / f"{name}.yaml"


def arch_path(name: str) -> Path:
    return ROOT / "recipes" / "archs" / f"{name}.txt"


def pytest_terminal_summary(terminalreporter):
    """The fuzz tests' totals: how many inputs they tried and how many distinct errors they met."""
    from fuzzing import summary
    line = summary()
    if line:
        terminalreporter.write_line(line)
