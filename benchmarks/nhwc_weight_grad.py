"""Which convolutions' channels-last (NHWC) backward passes fault in this torch build, and
whether tinynas's subsampled form of the strided 1x1 conv does.

torch 2.13's CPU build corrupts the heap (SIGSEGV / SIGABRT) computing the NHWC weight gradient
of a strided 1x1 ``nn.Conv2d`` with few input channels at 80x80 and beyond; tinynas builds every
strided 1x1 conv as ``tinynas.nn.point_conv.SubsampledPointConv`` and trains channels-last.
Each shape below runs three NHWC forward/backward passes in its own forked process (a heap fault
kills only that child), and the gradients are checked against NCHW. Printed: per conv kind, the
shapes run, how many faulted, the worst relative weight-gradient error.

    python benchmarks/nhwc_weight_grad.py [--sizes 80 160] [--batch 16] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

import torch  # imported before forking; no op runs in this process, so children start without thread pools


def _relative_error(kind: str, cin: int, cout: int, kernel: int, stride: int, size: int, batch: int,
                    groups: int) -> float:
    from tinynas.nn.point_conv import SubsampledPointConv

    torch.manual_seed(0)
    build = SubsampledPointConv if kind == "subsampled" else torch.nn.Conv2d
    conv = build(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    reference = torch.nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    reference.load_state_dict(conv.state_dict())
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(batch, cin, size, size)
    nhwc = x.to(memory_format=torch.channels_last).requires_grad_(True)
    for _ in range(3):  # a corrupted heap often faults on a later allocation, not the first pass
        conv.weight.grad = None
        conv(nhwc).pow(2).mean().backward()
    reference(x.requires_grad_(True)).pow(2).mean().backward()
    return float((conv.weight.grad - reference.weight.grad).abs().max() / reference.weight.grad.abs().max())


def _run_forked(shape: tuple) -> dict:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        torch.set_num_threads(1)
        try:
            payload = {"error": _relative_error(*shape)}
        except Exception as err:  # reported, not raised: the sweep goes on
            payload = {"exception": f"{type(err).__name__}: {err}"[:200]}
        os.write(write, json.dumps(payload).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    data = b""
    while chunk := os.read(read, 4096):
        data += chunk
    os.close(read)
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return json.loads(data or b'{"exception": "no result"}')


def shapes(sizes: list[int], batch: int, quick: bool) -> list[tuple]:
    channels_in = [3, 8, 12, 16, 24] if quick else [3, 4, 8, 12, 15, 16, 24, 32]
    channels_out = [8, 24] if quick else [8, 16, 24, 48]
    found = []
    for kind in ("plain", "subsampled"):  # the faulting conv, and tinynas's form of it
        for cin, cout, size in itertools.product(channels_in, channels_out, sizes):
            found.append((kind, cin, cout, 1, 2, size, batch, 1))
    for cin, cout, kernel, stride, size in itertools.product(channels_in, channels_out, (1, 3, 5), (1, 2), sizes):
        if (kernel, stride) != (1, 2):
            found.append(("plain", cin, cout, kernel, stride, size, batch, 1))
    for cin, kernel, stride, size in itertools.product(channels_in[1:], (3, 5), (1, 2), sizes):
        found.append(("plain", cin, cin, kernel, stride, size, batch, cin))  # depthwise
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[80, 160])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="fewer channel counts")
    args = parser.parse_args()
    groups: dict[str, dict] = {}
    for shape in shapes(args.sizes, args.batch, args.quick):
        kind, cin, cout, kernel, stride, size, batch, conv_groups = shape
        label = (f"{kind} {kernel}x{kernel} stride {stride}" + (" depthwise" if conv_groups > 1 else ""))
        result = _run_forked(shape)
        row = groups.setdefault(label, {"shapes": 0, "faulted": [], "failed": [], "worst_error": 0.0})
        row["shapes"] += 1
        if "signal" in result:
            row["faulted"].append(f"{cin}->{cout}@{size} (signal {result['signal']})")
        elif "exception" in result:
            row["failed"].append(f"{cin}->{cout}@{size}: {result['exception']}")
        else:
            row["worst_error"] = max(row["worst_error"], result["error"])
        print(f"{label:32s} {cin:3d}->{cout:<3d} at {size:4d}: {json.dumps(result)}", file=sys.stderr, flush=True)
    print(f"torch {torch.__version__}, batch {args.batch}, sizes {args.sizes}, one thread")
    print(f"{'conv':32s} {'shapes':>6s} {'faulted':>7s} {'worst rel. grad error':>22s}  faulting shapes")
    for label, row in groups.items():
        print(f"{label:32s} {row['shapes']:6d} {len(row['faulted']):7d} {row['worst_error']:22.2e}  "
              f"{', '.join(row['faulted'][:6])}{' ...' if len(row['faulted']) > 6 else ''}")
        for failure in row["failed"][:3]:
            print(f"  failed: {failure}")


if __name__ == "__main__":
    main()
