"""How fast the latency predictor answers inside a search loop.

Prints microseconds per ``predict_ms`` call: on first sight of an architecture's ops
(interpolation) and once they have been seen (cache lookups), for DAMO-YOLO T/S backbones
and for random members of a space. Target: < 100 us per DAMO-YOLO-size backbone once seen.

    .venv/bin/python benchmarks/latency_predict_speed.py [--db cpu-fp32] [--space k1kx] [-n 2000]
"""

from __future__ import annotations

import argparse
import random
import time

from tinynas.archio import load_arch
from tinynas.latency import load_predictor
from tinynas.resources import ARCH_DIR, resolve_space_path
from tinynas.space import load_space


def per_call_us(fn, items, repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        for item in items:
            fn(item)
    return (time.perf_counter() - start) / (repeats * len(items)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="cpu-fp32")
    parser.add_argument("--space", default="k1kx")
    parser.add_argument("-n", type=int, default=2000, help="random architectures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    space = load_space(resolve_space_path(args.space))
    res = space.resolution
    rng = random.Random(args.seed)
    archs, arch = [], space.initial
    for _ in range(args.n):  # a random walk, as an evolutionary search produces them
        arch = space.mutate(arch, rng)
        archs.append(arch)

    predictor = load_predictor(args.db)
    t0 = time.perf_counter()
    predictor.op_ms(next(iter(predictor.table.latency_by_op())))
    print(f"table {predictor.table.path}: {len(predictor.table)} ops, first lookup (index build) "
          f"{(time.perf_counter() - t0) * 1e3:.1f} ms")

    cold = per_call_us(lambda a: predictor.predict_ms(a, res), archs)
    warm = per_call_us(lambda a: predictor.predict_ms(a, res), archs, repeats=5)
    print(f"{args.n} random {space.name} archs: first sight {cold:.1f} us/arch, seen {warm:.2f} us/arch")

    for name in ("damoyolo-t", "damoyolo-s"):
        a = load_arch(ARCH_DIR / f"{name}.txt")
        a = a.with_block(0, a.blocks[0].replace(in_channels=space.in_channels))
        if not space.contains(a):
            print(f"{name}: outside the {space.name} space limits; timed anyway")
        predictor.predict_ms(a, res)
        us = per_call_us(lambda x: predictor.predict_ms(x, res), [a], repeats=20000)
        print(f"{name} backbone once seen: {us:.2f} us per predict_ms (target < 100 us)")


if __name__ == "__main__":
    main()
