"""How fast architectures are scored: closed form (score + costs) and forward pass.

Prints archs/s for
  * the closed form on one core, over a stream of mutated candidates as a search produces
    them (per-block caches warm up as blocks are first seen), and fully cold (caches cleared
    before every architecture);
  * the forward-pass entropy score at 320x320, batch 8, one draw, with torch's threads.

Targets (issue 2): closed form >= 10,000 archs/s on one core; forward pass >= 10 archs/s.

    python benchmarks/score_speed.py [--space k1kx] [--count 20000] [--forward 10]
"""

from __future__ import annotations

import argparse
import platform
import random
import time

import torch

from tinynas.costs import arch_costs, block_costs
from tinynas.resources import resolve_space_path
from tinynas.scores import EntropyScore, MadnasScore
from tinynas.scores.madnas import block_log_std
from tinynas.space import load_space


def candidate_stream(space, count: int, seed: int):
    """Children of a drifting population, like the evolutionary search generates."""
    rng = random.Random(seed)
    population = [space.random_arch(rng, steps=10) for _ in range(64)]
    out = []
    for _ in range(count):
        child = space.mutate(rng.choice(population), rng)
        population[rng.randrange(len(population))] = child
        out.append(child)
    return out


def closed_form_rate(space, archs, cold: bool) -> float:
    scorer = MadnasScore()
    block_costs.cache_clear()
    block_log_std.cache_clear()
    start = time.perf_counter()
    for arch in archs:
        if cold:
            block_costs.cache_clear()
            block_log_std.cache_clear()
        scorer(arch)
        arch_costs(arch, space.resolution)
    return len(archs) / (time.perf_counter() - start)


def forward_rate(space, count: int, seed: int, batch: int) -> tuple[float, float]:
    rng = random.Random(seed)
    archs = [space.random_arch(rng, steps=20) for _ in range(count)]
    scorer = EntropyScore(resolution=space.resolution, batch=batch, repeats=1, seed=0)
    scorer(space.initial)  # warm-up: first-call allocations and kernel selection
    start = time.perf_counter()
    for arch in archs:
        scorer(arch)
    elapsed = time.perf_counter() - start
    mean_gmacs = sum(arch_costs(a, space.resolution).macs for a in archs) / len(archs) / 1e9
    return count / elapsed, mean_gmacs


def conv_throughput(batch: int) -> float:
    """Multiply-accumulates per second of one mid-network 3x3 conv: the forward pass's ceiling."""
    import torch.nn.functional as F

    x, w = torch.randn(batch, 96, 80, 80), torch.randn(96, 96, 3, 3)
    with torch.no_grad():
        F.conv2d(x, w, padding=1)
        start = time.perf_counter()
        for _ in range(5):
            F.conv2d(x, w, padding=1)
    return 5 * batch * 96 * 96 * 9 * 80 * 80 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="k1kx")
    parser.add_argument("--count", type=int, default=20000, help="closed-form candidates")
    parser.add_argument("--forward", type=int, default=10, help="forward-pass architectures")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    space = load_space(resolve_space_path(args.space))
    archs = candidate_stream(space, args.count, args.seed)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"torch {torch.__version__}, torch threads {torch.get_num_threads()}")
    print(f"space {space.name} at {space.resolution}x{space.resolution}")
    warm = closed_form_rate(space, archs, cold=False)
    cold = closed_form_rate(space, archs[:2000], cold=True)
    distinct = len({a.key for a in archs})
    print(f"closed form (madnas + MACs/params/layers), one core: {warm:,.0f} archs/s over a "
          f"search-like stream of {len(archs)} candidates ({distinct} distinct); "
          f"{cold:,.0f} archs/s fully cold")
    if args.forward:
        rate, gmacs = forward_rate(space, args.forward, args.seed, args.batch)
        ceiling = conv_throughput(args.batch) / (gmacs * 1e9 * args.batch)
        print(f"forward pass (entropy, batch {args.batch}, 1 draw): {rate:.2f} archs/s "
              f"(mean {gmacs:.2f} GMACs per image; this CPU's conv throughput caps it at "
              f"{ceiling:.2f} archs/s)")


if __name__ == "__main__":
    main()
