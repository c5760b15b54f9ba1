"""DAMO-YOLO parity and re-parameterisation speed-up of the shipped detector presets.

Prints, for damoyolo-t/s/m/l: params and GFLOPs of the fused (deploy) form at 640x640
(GFLOPs = 2 x the multiply-accumulates torch's FlopCounterMode counts) beside DAMO-YOLO's published figures, then the CPU
latency of the training form and of the fused form at 320x320 (batch 1, median of
``--repeats`` timed runs after warm-up) and their ratio.

    .venv/bin/python benchmarks/detector_parity.py [--models t,s] [--size 320] [--repeats 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from tinynas.deploy import reparameterize
from tinynas.detect import build_detector, load_model_recipe
from tinynas.detect.costs import recipe_costs

PUBLISHED = {"t": (8.5, 18.1), "s": (16.3, 37.8), "m": (28.2, 61.8), "l": (42.1, 97.3)}


@torch.inference_mode()
def paired_latency_ms(models: list[torch.nn.Module], size: int, repeats: int,
                      warmup: int = 2) -> list[float]:
    """Median latency of each model, timing them in turn within every repeat so that load
    from other processes falls on all of them alike."""
    images = torch.rand(1, 3, size, size) * 255
    for _ in range(warmup):
        for model in models:
            model(images)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for model, bucket in zip(models, times):
            start = time.perf_counter()
            model(images)
            bucket.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(bucket) for bucket in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="t,s,m,l", help="comma-separated presets (default %(default)s)")
    parser.add_argument("--size", type=int, default=320, help="latency input size (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per form (default %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-latency", action="store_true", help="only the parity table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Randomly initialised deep nets can drift into denormal floats, which x86 CPUs process
    # orders of magnitude slower; that would time the hardware's slow path, not the model.
    torch.set_flush_denormal(True)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")

    print("\nparity at 640x640, 80 classes, fused form")
    print(f"{'model':<12}{'params':>9}{'published':>11}{'diff':>8}{'GFLOPs':>9}{'published':>11}{'diff':>8}")
    for name in names:
        total = recipe_costs(load_model_recipe(f"damoyolo-{name}"), 640)[-1]
        params, gflops = total.params / 1e6, total.flops / 1e9
        pub_params, pub_gflops = PUBLISHED[name]
        print(f"damoyolo-{name:<3}{params:>8.2f}M{pub_params:>10.1f}M{params / pub_params - 1:>+8.1%}"
              f"{gflops:>9.2f}{pub_gflops:>11.1f}{gflops / pub_gflops - 1:>+8.1%}")

    if args.no_latency:
        return
    print(f"\nCPU latency at {args.size}x{args.size}, batch 1, median of {args.repeats} (ms)")
    print(f"{'model':<12}{'unfused':>10}{'fused':>10}{'ratio':>8}")
    for name in names:
        torch.manual_seed(0)
        model = build_detector(load_model_recipe(f"damoyolo-{name}")).eval()
        unfused, fused = paired_latency_ms([model, reparameterize(model)], args.size, args.repeats)
        print(f"damoyolo-{name:<3}{unfused:>10.1f}{fused:>10.1f}{unfused / fused:>8.2f}")


if __name__ == "__main__":
    main()
