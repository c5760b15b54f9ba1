"""Kill a tinynas job at a chosen durable write, then finish it: a crash test at every write boundary.

``Jobs`` starts one helper process that imports tinynas (and torch) once and forks a child for
each job; a child runs ``tinynas.cli.main(argv)`` with ``TINYNAS_CRASH_AT`` / ``TINYNAS_CRASH_LOG``
set (tinynas/crashpoints.py), so a kill lands exactly at a write boundary and costs no interpreter
start. The helper never runs torch work itself, so its children fork from a process without
thread pools. In each child the trainer's time-based saves are pinned (a save is due at the first
and last epoch of a call only): the boundaries a run passes are then the same in every run; and
the trainer's memory pre-check, which writes nothing, is skipped to keep the jobs fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

KILLED = -signal.SIGKILL


@dataclass(frozen=True)
class Boundary:
    index: int  # the process's n-th durable write, from 1
    path: str  # the file it commits

    def kind(self, root: Path) -> str:
        """The written file, relative to ``root`` (the job's working folder)."""
        try:
            return str(Path(self.path).resolve().relative_to(root.resolve()))
        except ValueError:
            return self.path


class Jobs:
    """Runs tinynas command lines in forked children of one long-lived helper process."""

    def __init__(self):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("TINYNAS_CRASH_AT", None)
        env.pop("TINYNAS_CRASH_LOG", None)
        self._helper = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env=env, text=True)

    def run(self, argv: list[str], cwd: Path, crash_at: str | None = None, log: Path | None = None,
            output: Path | None = None) -> int:
        """The exit status of ``tinynas <argv>`` run in ``cwd`` (``KILLED`` when the crash point hit)."""
        return self.run_many([{"argv": argv, "cwd": cwd, "crash_at": crash_at, "log": log, "output": output}])[0]

    def run_many(self, jobs: list[dict]) -> list[int]:
        """Run several jobs at once, one child each (keys as :meth:`run`'s arguments); their statuses.

        Each child runs with one thread, so two of them use two cores the way the suite's
        one-at-a-time tests leave one idle."""
        requests = [{"argv": j["argv"], "cwd": str(j["cwd"]), "crash_at": j.get("crash_at"),
                     "log": str(j["log"]) if j.get("log") else None,
                     "output": str(j.get("output") or Path(j["cwd"]) / "job.log")} for j in jobs]
        self._helper.stdin.write(json.dumps(requests) + "\n")
        self._helper.stdin.flush()
        reply = self._helper.stdout.readline()
        if not reply:
            raise RuntimeError("the crash-harness helper died")
        return [int(code) for code in json.loads(reply)["statuses"]]

    def boundaries(self, argv: list[str], cwd: Path, log: Path) -> list[Boundary]:
        """Run ``argv`` uninterrupted, recording the durable writes it passes."""
        log.unlink(missing_ok=True)
        status = self.run(argv, cwd, log=log)
        if status != 0:
            raise AssertionError(f"uninterrupted run failed ({status}):\n{(Path(cwd) / 'job.log').read_text()}")
        found = []
        for line in log.read_text().splitlines():
            index, path = line.split(" ", 1)
            found.append(Boundary(int(index), path))
        return found

    def close(self) -> None:
        self._helper.stdin.close()
        self._helper.wait(timeout=60)


# ---------------------------------------------------------------------------- the helper process
def _child(request: dict) -> None:
    """In the forked child: run one command line and exit with its status."""
    fd = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(request["cwd"])
    for name, value in (("TINYNAS_CRASH_AT", request["crash_at"]), ("TINYNAS_CRASH_LOG", request["log"])):
        if value:
            os.environ[name] = value
    status = 1
    try:
        import tinynas.train.trainer as trainer
        from tinynas.cli import main

        trainer.RESUME_SAVE_SECONDS = float("inf")
        # The memory pre-check traces the detector on the meta device: 40% of a tiny job, and it
        # writes nothing (its refusals are tested in test_detect_safety.py).
        trainer.check_detector_fits = lambda *args, **kwargs: None
        status = main(request["argv"])
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # a bug: its traceback goes to the job's log
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _serve() -> None:
    # Imported once here, inherited by every child (what a job would import lazily costs seconds).
    import importlib

    import matplotlib
    matplotlib.use("Agg")
    for name in ("torch", "matplotlib.pyplot", "PIL.Image", "pycocotools.coco", "pycocotools.cocoeval", "onnx",
                 "onnxruntime", "tinynas.cli", "tinynas.train.trainer", "tinynas.train.evaluate",
                 "tinynas.design.stages", "tinynas.design.measure", "tinynas.design.report",
                 "tinynas.deploy.onnx_export", "tinynas.latency.build", "tinynas.search.evolution",
                 # torch.onnx's exporter loads its compiler stack on the first export: ~10 s a job.
                 "torch._dynamo", "torch.export", "onnxscript", "torch.onnx._internal.exporter._core"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass

    for line in sys.stdin:
        children = []
        for one in json.loads(line):  # the jobs to run at once
            pid = os.fork()
            if pid == 0:
                _child(one)
            children.append(pid)
        codes = []
        for pid in children:
            _, status = os.waitpid(pid, 0)
            codes.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
        sys.stdout.write(json.dumps({"statuses": codes}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
