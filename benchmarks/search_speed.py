"""Search speed at DAMO-YOLO-S scale: candidates per second with --jobs 1 and --jobs 2.

The search TinyNAS ran for DAMO-YOLO-S: K1KX space at 320x320x12, population 512, 500,000
candidates, a layers budget (25) and a latency budget, closed-form MAE score with stage
weights [0,0,1,1,16]. The latency budget is the predicted latency of DAMO-YOLO-S's own
backbone (stem widened to the 12 channels of a Focus stem), priced by the shipped CPU table
when it exists, else by an op table this script builds (fixed cost per conv plus a cost per
MAC, filled on first sight of each op, like a measured table).

    .venv/bin/python benchmarks/search_speed.py                    # 500,000 candidates, jobs 1 and 2
    .venv/bin/python benchmarks/search_speed.py --candidates 50000 --jobs 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tinynas.api import load_any_arch
from tinynas.arch import Arch
from tinynas.ops import block_op_counts
from tinynas.search import search
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=500_000)
    parser.add_argument("--population", type=int, default=512)
    parser.add_argument("--jobs", default="1,2", help="comma-separated job counts to time (default 1,2)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--latency-db", default=str(CPU_TABLE),
                        help="latency table (default: the shipped CPU table; a built op table if missing)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    space = load_space(ROOT / "search_spaces" / "k1kx.yaml")
    if Path(args.latency_db).is_file():
        latency, latency_name = args.latency_db, args.latency_db
        model = load_latency_table(args.latency_db)
    else:
        model = latency = BuiltOpTable()
        latency_name = BuiltOpTable.device
    budget_ms = model.predict_ms(damoyolo_s_backbone(), space.resolution)
    budgets = [f"latency={budget_ms:.6g}ms", "layers=25"]
    print(f"space k1kx @ {space.resolution}, population {args.population}, {args.candidates} candidates, "
          f"budgets {', '.join(budgets)} (latency: {latency_name})")
    results = {}
    for jobs in (int(j) for j in args.jobs.split(",")):
        started = time.perf_counter()
        result = search(space, budgets, latency=latency, population=args.population,
                        candidates=args.candidates, seed=args.seed, weights=[0, 0, 1, 1, 16],
                        jobs=jobs, batch_size=args.batch_size, progress=False)
        seconds = time.perf_counter() - started
        results[jobs] = result
        print(f"jobs {jobs}: {result.candidates / seconds:,.0f} candidates/s  ({seconds:.1f} s for "
              f"{result.candidates:,}; {result.evaluated:,} distinct, {result.within_budget:,} within budget; "
              f"best score {result.best.score:.2f} vs initial {result.initial_score:.2f}; "
              f"best {result.best.layers} layers, {result.best.latency_ms:.4g} ms)")
    hashes = {r.best.hash for r in results.values()}
    print(f"same best architecture for every job count: {len(hashes) == 1} ({', '.join(sorted(hashes))})")


if __name__ == "__main__":
    main()
