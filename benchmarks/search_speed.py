"""Search speed at DAMO-YOLO-S scale: candidates per second with --jobs 1 and --jobs 2.

The search TinyNAS ran for DAMO-YOLO-S: K1KX space at 320x320x12, population 512, 500,000
candidates, a layers budget (25) and a latency budget, closed-form MAE score with stage
weights [0,0,1,1,16]. The latency budget is the predicted latency of DAMO-YOLO-S's own
backbone (stem widened to the 12 channels of a Focus stem), priced by the shipped CPU table
when it exists, else by an op table this script builds (fixed cost per conv plus a cost per
MAC, filled on first sight of each op, like a measured table).

With ``--baseline-ref REF`` the same search also runs with the code of git commit REF (from
a temporary ``git worktree``); each timed search then runs in a fresh process, this code's and
the baseline's taking turns, so both pay the same start-up and meet the same machine load.

    .venv/bin/python benchmarks/search_speed.py                    # 500,000 candidates, jobs 1 and 2
    .venv/bin/python benchmarks/search_speed.py --candidates 50000 --jobs 1
    .venv/bin/python benchmarks/search_speed.py --candidates 100000 --jobs 1 --baseline-ref 865926f --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tinynas.api import load_any_arch
from tinynas.arch import Arch
from tinynas.ops import block_op_counts
from tinynas.search import search
try:
    from tinynas.search.judge import load_latency_table
except ImportError:  # a --baseline-ref from before search/evaluate.py was renamed judge.py
    from tinynas.search.evaluate import load_latency_table
from tinynas.space import load_space

ROOT = Path(__file__).resolve().parent.parent
CPU_TABLE = ROOT / "latency_db" / "cpu-fp32.csv"


class BuiltOpTable:
    """Per-op latency table filled on first sight: 5 us per conv + 4 ms per GMAC.

    Like a real predictor it sums ops per block and caches each block's sum by (block,
    input size), so a search pays for a block's ops once, not once per candidate.
    """

    device = "synthetic op table (benchmarks/search_speed.py)"

    def __init__(self):
        self.table = {}
        self.blocks = {}

    def op_ms(self, op) -> float:
        ms = self.table.get(op)
        if ms is None:
            macs = op.out_height * op.out_width * op.out_channels * (op.in_channels // op.groups) * op.kernel ** 2
            ms = self.table[op] = 0.005 + 4.0 * macs / 1e9
        return ms

    def block_ms(self, spec, size: int) -> tuple[float, int]:
        key = (spec, size)
        found = self.blocks.get(key)
        if found is None:
            ops, out_size = block_op_counts(spec, size)
            found = self.blocks[key] = (sum(n * self.op_ms(op) for op, n in ops), out_size)
        return found

    def predict_ms(self, arch: Arch, resolution: int) -> float:
        total, size = 0.0, resolution
        for spec in arch.blocks:
            ms, size = self.block_ms(spec, size)
            total += ms
        return total


def damoyolo_s_backbone() -> Arch:
    arch = load_any_arch("damoyolo-s")
    return arch.with_block(0, arch.blocks[0].replace(in_channels=12))


def one_search(args, jobs: int) -> dict:
    """Time one search in this process; its figures as JSON values."""
    space = load_space(ROOT / "search_spaces" / "k1kx.yaml")
    if Path(args.latency_db).is_file():
        latency, latency_name = args.latency_db, args.latency_db
        model = load_latency_table(args.latency_db)
    else:
        model = latency = BuiltOpTable()
        latency_name = BuiltOpTable.device
    budget_ms = model.predict_ms(damoyolo_s_backbone(), space.resolution)
    budgets = [f"latency={budget_ms:.6g}ms", "layers=25"]
    started, cpu_started = time.perf_counter(), time.process_time()
    result = search(space, budgets, latency=latency, population=args.population,
                    candidates=args.candidates, seed=args.seed, stage_weights=[0, 0, 1, 1, 16],
                    jobs=jobs, batch_size=args.batch_size, progress=False)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"setting": f"space k1kx @ {space.resolution}, population {args.population}, {args.candidates} "
                       f"candidates, budgets {', '.join(budgets)} (latency: {latency_name})",
            "jobs": jobs, "seconds": seconds, "rate": result.candidates / seconds,
            # This process's CPU time: with one job, all the work, and far steadier than the
            # wall clock on a machine shared with other work.
            "cpu_rate": result.candidates / cpu_seconds,
            "candidates": result.candidates, "evaluated": result.evaluated,
            "within_budget": result.within_budget, "duplicates": result.duplicates,
            "best_hash": result.best.hash, "best_score": result.best.score,
            "initial_score": result.initial_score, "best_layers": result.best.layers,
            "best_latency_ms": result.best.latency_ms}


def report(name: str, figures: dict) -> str:
    return (f"{name}jobs {figures['jobs']}: {figures['rate']:,.0f} candidates/s, {figures['cpu_rate']:,.0f} per "
            f"CPU-second of the main process  ({figures['seconds']:.1f} s for "
            f"{figures['candidates']:,}; {figures['evaluated']:,} distinct, {figures['within_budget']:,} within "
            f"budget; best score {figures['best_score']:.2f} vs initial {figures['initial_score']:.2f}; "
            f"best {figures['best_layers']} layers, {figures['best_latency_ms']:.4g} ms)")


@contextmanager
def worktree(ref: str):
    """The code of commit ``ref`` in a temporary git worktree, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="search-speed-")) / "code"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(folder), ref],
                   check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], check=False)
        folder.parent.rmdir()


def search_in_process(code: Path, argv: list[str], jobs: int) -> dict:
    """One timed search in a fresh Python process that imports tinynas from ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--jobs", str(jobs), "--child"],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the search with the code in {code} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_with_baseline(args, argv: list[str], job_counts: list[int]) -> None:
    with worktree(args.baseline_ref) as baseline:
        for jobs in job_counts:
            runs = {"this code": [], f"baseline {args.baseline_ref}": []}
            for _ in range(args.repeat):
                runs["this code"].append(search_in_process(ROOT, argv, jobs))
                runs[f"baseline {args.baseline_ref}"].append(search_in_process(baseline, argv, jobs))
            print(runs["this code"][0]["setting"])
            for name, figures in runs.items():
                for f in figures:
                    print(report(f"{name:>18}: ", f))
            ours, theirs = runs.values()
            same = all(f[k] == theirs[0][k] for f in ours + theirs
                       for k in ("best_hash", "evaluated", "within_budget", "duplicates"))
            for key, what in (("rate", "candidates/s"), ("cpu_rate", "candidates per CPU-second")):
                a, b = max(f[key] for f in ours), max(f[key] for f in theirs)
                print(f"jobs {jobs}, best of {args.repeat}: this code {a:,.0f} {what}, baseline {b:,.0f} "
                      f"({a / b - 1:+.1%})")
            print(f"same result as the baseline: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=500_000)
    parser.add_argument("--population", type=int, default=512)
    parser.add_argument("--jobs", default="1,2", help="comma-separated job counts to time (default 1,2)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--latency-db", default=str(CPU_TABLE),
                        help="latency table (default: the shipped CPU table; a built op table if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-ref", metavar="REF",
                        help="also time the code of this git commit (e.g. 865926f), in turns with this code")
    parser.add_argument("--repeat", type=int, default=1, help="with --baseline-ref: timed runs of each (default 1)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    job_counts = [int(j) for j in args.jobs.split(",")]

    if args.child:  # one search for a parent comparing with a baseline: print its figures
        print(json.dumps(one_search(args, job_counts[0])))
        return
    if args.baseline_ref:
        argv = ["--candidates", str(args.candidates), "--population", str(args.population),
                "--batch-size", str(args.batch_size), "--latency-db", args.latency_db, "--seed", str(args.seed)]
        compare_with_baseline(args, argv, job_counts)
        return
    results = []
    for jobs in job_counts:
        figures = one_search(args, jobs)
        if not results:
            print(figures["setting"])
        results.append(figures)
        print(report("", figures))
    hashes = {f["best_hash"] for f in results}
    print(f"same best architecture for every job count: {len(hashes) == 1} ({', '.join(sorted(hashes))})")


if __name__ == "__main__":
    main()
