"""The run store: everything a search writes into its run folder, and reads back to resume.

It owns ``candidates.csv`` (every told candidate, in order), ``checkpoint.json`` (the
strategy's state plus the log's length and the run's time segments), the best files,
``summary.json`` and ``pareto.png``; the file formats are in output.py and checkpoint.py.
A store without a folder keeps a run in memory: it writes nothing.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from .state_file import CHECKPOINT_NAME, save_checkpoint
from .judge import Evaluation
from .output import (CANDIDATES_NAME, SUMMARY_NAME, CandidateLog, environment, plot_pareto, read_hashes,
                     write_best, write_summary)
from .population import Member
from .settings import SearchConfig
from .strategy import Candidate, Evolution


class RunStore:
    def __init__(self, folder: Path | None, rungs: int, checkpoint_every: int):
        self.folder = folder
        self.rungs = rungs
        self.checkpoint_every = checkpoint_every
        self.next_checkpoint = checkpoint_every
        self.segments: list[dict] = []
        self.log: CandidateLog | None = None
        self._segment: dict = {}
        self._clock = 0.0

    # -- opening ----------------------------------------------------------------------------
    def create(self) -> None:
        """A new log (called only once the seeds exist: an impossible budget leaves no folder)."""
        if self.folder is not None:
            self.log = CandidateLog(self.folder / CANDIDATES_NAME)

    def reopen(self, checkpoint: dict) -> set[str]:
        """Take up a checkpointed run: the log cut back to its checkpointed length.

        Returns the hashes of the candidates logged so far, which the checkpoint leaves out.
        """
        if self.folder is None:
            raise ValueError("a resumed run needs its folder")
        self.segments = list(checkpoint.get("segments", []))
        self.next_checkpoint = int(checkpoint.get("next_checkpoint", self.checkpoint_every))
        csv_bytes = int(checkpoint["csv"]["bytes"])
        expected = int(checkpoint["counters"]["evaluated"])
        path = self.folder / CANDIDATES_NAME
        self.log = CandidateLog(path, resume_bytes=csv_bytes)
        told, rows = read_hashes(path, csv_bytes)
        if rows != expected or len(told) != rows:
            raise UserError(str(path), "", f"does not match the checkpoint ({rows} rows, {expected} expected)")
        return told

    # -- while running ----------------------------------------------------------------------
    def record(self, candidates: Sequence[Candidate], results: Sequence[Evaluation]) -> None:
        """Append the told candidates to ``candidates.csv``."""
        if self.log is None:
            return
        ladder = self.rungs > 1
        rows = []
        for (step, digest, _), ev in zip(candidates, results):
            rungs = ";".join(str(r) for r, ok in enumerate(ev.within) if ok) if ladder else ""
            rows.append((step, digest, ev.score, ev.macs, ev.params, ev.layers, ev.latency_ms,
                         ev.score is not None, rungs))
        self.log.append(rows)

    def begin_segment(self, from_candidate: int, jobs: int, backend: str) -> None:
        """Start timing one sitting of the run (a resume adds one)."""
        self._segment = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "from_candidate": from_candidate, "jobs": jobs, "backend": backend}
        self._clock = time.perf_counter()
        self.segments.append(self._segment)

    def end_segment(self, to_candidate: int) -> None:
        """Where this sitting has got to (called after every round, and at the end)."""
        self._segment["seconds"] = round(time.perf_counter() - self._clock, 3)
        self._segment["to_candidate"] = to_candidate

    @property
    def seconds(self) -> float:
        return sum(s.get("seconds", 0.0) for s in self.segments)

    def checkpoint_due(self, generated: int) -> bool:
        """Whether ``generated`` candidates passed the next checkpoint mark (then moved on)."""
        if generated < self.next_checkpoint:
            return False
        while self.next_checkpoint <= generated:
            self.next_checkpoint += self.checkpoint_every
        return True

    def save_checkpoint(self, config: SearchConfig, strategy: Evolution) -> None:
        """The strategy's state without its seen hashes: ``reopen`` rebuilds them from the log."""
        if self.folder is None:
            return
        state = strategy.state_dict(include_seen=False)
        save_checkpoint(self.folder, {
            "config": config.to_json(),
            **state,
            "next_checkpoint": self.next_checkpoint,
            "segments": self.segments,
            "csv": {"bytes": self.log.bytes if self.log else 0, "rows": state["counters"]["evaluated"]},
        })

    # -- results ----------------------------------------------------------------------------
    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def write_best(self, label: str, member: Member, meta: dict) -> tuple[str, ...]:
        """``<label>.yaml`` and ``<label>.txt``; their names (none for a run in memory)."""
        if self.folder is None:
            return ()
        return tuple(write_best(self.folder, label, member, meta))

    def write_summary(self, config: SearchConfig, counters: dict, initial_score: float, rungs: Sequence,
                      latency_device: str | None, has_latency: bool) -> dict:
        """``summary.json`` and ``pareto.png``; ``rungs``: ``RungResult`` values. Returns the summary."""
        seconds = self.seconds
        summary = {
            "config": {k: v for k, v in config.to_json().items() if k != "space"},
            "space": config.space,
            "seed": config.seed,
            **environment(),
            "latency_device": latency_device,
            "timings": {"seconds": round(seconds, 3),
                        "candidates_per_s": round(counters["candidates"] / seconds, 1) if seconds else None,
                        "segments": self.segments},
            "counters": counters,
            "initial_score": initial_score,
            "rungs": [{"label": r.label, "budgets": [b.text for b in r.budgets], "files": list(r.files),
                       "best": {k: v for k, v in r.best.to_json().items() if k != "blocks"}}
                      for r in rungs],
        }
        if self.folder is not None:
            plot = plot_pareto(self.folder, [(r.label, r.best) for r in rungs], has_latency)
            summary["files"] = [CANDIDATES_NAME, CHECKPOINT_NAME, SUMMARY_NAME] + [
                f for r in rungs for f in r.files] + ([plot] if plot else [])
            write_summary(self.folder, summary)
        return summary
