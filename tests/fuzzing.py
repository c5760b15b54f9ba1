"""Mutations of valid documents for the fuzz tests, and the tally printed at the end of a run.

A mutation picks one node of a parsed document (a mapping, a list or a value, at any depth)
and breaks it the way real files break: a value of the wrong type or out of range, a key
removed or unknown, an item repeated, a path where a name belongs. Text mutations cut or
corrupt the serialised form. Every choice is drawn from hypothesis, so a failure shrinks to
the smallest breaking edit.
"""

from __future__ import annotations

import copy
import re
from collections import Counter

from hypothesis import strategies as st

INPUTS: Counter = Counter()  # format -> inputs tried
MESSAGES: dict[str, set[str]] = {}  # format -> distinct error messages (numbers masked)

ODD_VALUES = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, -1, 1, 2, 3, 7, 31, 2 ** 31, 10 ** 9, 10 ** 18, -10 ** 9, 2 ** 70]),
    st.integers(-10 ** 6, 10 ** 6),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from(["", "auto", "../../escape", "/tmp/tinynas-fuzz-escape", "nan", "-1", "1e999",
                     "ConvKXBNRELU", "SuperResK1KX", "latency=0.1ms", "x" * 300, "\x00", "a/b"]),
    st.text(max_size=12),
    st.lists(st.integers(-5, 5), max_size=4),
    st.dictionaries(st.sampled_from(["a", "in", "out", "k", "name"]), st.integers(-2, 2), max_size=2),
)


def _nodes(doc, path=()):
    """Every (path, node) of a nested document, the root first."""
    yield path, doc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _nodes(value, path + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _nodes(value, path + (i,))


def _parent(doc, path):
    node = doc
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated(draw, doc):
    """``doc`` with one to three edits."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        nodes = list(_nodes(doc))
        path, node = draw(st.sampled_from(nodes))
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add_key", "repeat", "wrap"]))
        if not path:  # the root: replace it whole, or add an unknown top-level key
            if action == "replace":
                doc = draw(ODD_VALUES)
            elif isinstance(doc, dict):
                doc[draw(st.sampled_from(["unknown", "blocks", "name", "extra"]))] = draw(ODD_VALUES)
            continue
        parent = _parent(doc, path)
        key = path[-1]
        if action == "replace":
            parent[key] = draw(ODD_VALUES)
        elif action == "delete":
            del parent[key]
        elif action == "add_key" and isinstance(node, dict):
            node[draw(st.sampled_from(["unknown", "in", "out", "k", "s", "L", "btn", "name", "class"]))] = \
                draw(ODD_VALUES)
        elif action == "repeat" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(node))
        elif action == "wrap":
            parent[key] = [node] if draw(st.booleans()) else {"value": node}
    return doc


@st.composite
def corrupted_text(draw, text: str):
    """``text`` cut short, or with a few characters replaced or inserted."""
    kind = draw(st.sampled_from(["cut", "flip", "insert"]))
    if kind == "cut" or not text:
        return text[:draw(st.integers(0, max(0, len(text) - 1)))]
    chars = list(text)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(chars) - 1))
        new = draw(st.sampled_from(list("{}[]:,-'\"#&*!|>\n\t 0x9e.") + ["\u00e9", "\x00"]))
        if kind == "flip":
            chars[at] = new
        else:
            chars.insert(at, new)
    return "".join(chars)


def record(fmt: str, message: str | None, count: bool = True) -> None:
    """Count one input of ``fmt`` (unless a second reader saw it); keep the error it got, if any."""
    INPUTS[fmt] += int(count)
    if message:
        MESSAGES.setdefault(fmt, set()).add(re.sub(r"tinynas-fuzz-\w+|\d+(\.\d+)?(e[-+]?\d+)?", "N", message))


def summary() -> str | None:
    if not INPUTS:
        return None
    parts = ", ".join(f"{fmt} {n} ({len(MESSAGES.get(fmt, ()))} distinct errors)" for fmt, n in sorted(INPUTS.items()))
    distinct = sum(len(m) for m in MESSAGES.values())
    return f"fuzz: {sum(INPUTS.values())} generated inputs, {distinct} distinct error messages; {parts}"
