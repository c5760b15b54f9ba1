"""MkDocs hook: the dated measurements live in benchmarks/RESULTS.md, beside the scripts that print
them; the site shows that file as its page "results.md" without keeping a second copy in docs/."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md"


def on_files(files, config):
    # RESULTS.md points at docs/ from benchmarks/ ("../docs/x"); as a page at the site's root
    # the same targets are plain "x".
    text = RESULTS.read_text(encoding="utf-8").replace("](../docs/", "](")
    files.append(File.generated(config, "results.md", content=text))
    return files
