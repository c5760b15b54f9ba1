"""GPU readiness: run every CUDA path of tinynas once, in under four minutes, and say which work.

None of these paths can run on the CPU machines the project is built on; run this first
whenever a GPU is lent:

    python benchmarks/gpu_check.py [--device cuda:0] [--out /tmp/gpu-check]

Checks, each timed and reported PASS / FAIL / SKIP with its figures:

1. CUDA-event timing of a few table ops at fp16 (eager PyTorch, cudnn.benchmark on).
2. A small latency table in TensorRT (fp16, through onnxruntime's TensorRT provider), built and
   loaded back; SKIP when this onnxruntime has no TensorRT provider.
3. Two AMP training iterations of a tiny detector distilled from a tiny teacher (CWD).
4. ``torchrun --nproc_per_node 1`` training on CUDA with the NCCL backend.

Exit code 0 when nothing failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TINY_ARCH = [
    {"class": "ConvKXBNRELU", "in": 3, "out": 16, "s": 1, "k": 3},
    {"class": "SuperResK1KX", "in": 16, "out": 24, "s": 2, "k": 3, "L": 1, "btn": 16},
    {"class": "SuperResK1KX", "in": 24, "out": 48, "s": 2, "k": 3, "L": 1, "btn": 24},
    {"class": "SuperResK1KX", "in": 48, "out": 64, "s": 2, "k": 3, "L": 1, "btn": 32},
    {"class": "SuperResK1KX", "in": 64, "out": 64, "s": 1, "k": 3, "L": 1, "btn": 32},
    {"class": "SuperResK1KX", "in": 64, "out": 128, "s": 2, "k": 3, "L": 1, "btn": 64},
]
TINY_SPACE = {
    "name": "gpu-check", "resolution": 32, "in_channels": 3, "channel_divisor": 8,
    "defaults": {"out": [8, 32], "L": [1, 2], "btn_ratio": [0.5, 1.0], "kernels": [3]},
    "initial": [{"class": "ConvKXBNRELU", "in": 3, "out": 16, "s": 1, "k": 3},
                {"class": "SuperResK1KX", "in": 16, "out": 32, "s": 2, "k": 3, "L": 1, "btn": 16}],
    "blocks": [{"out": [16, 32]}, {"out": [16, 32]}],
}


def recipe(data, out: Path, device: str, epochs: int) -> dict:
    return {
        "name": out.name,
        "backbone": {"arch": TINY_ARCH, "wrap": "res", "out_indices": [2, 4, 5], "focus": True},
        "neck": {"depth": 1.0, "hidden_ratio": 1.0, "out_channels": [32, 64, 128]},
        "head": {"num_classes": len(data.classes)},
        "data": {"train_images": str(data.train_images), "train_annotations": str(data.train_annotations),
                 "val_images": str(data.val_images), "val_annotations": str(data.val_annotations), "size": 64},
        "train": {"epochs": epochs, "batch_size": 8, "device": device, "amp": True, "lr_per_64": 0.01,
                  "warmup_epochs": 0},
        "out": str(out),
    }


def check_event_timing(device: str, work: Path) -> str:
    from tinynas.latency import measure
    from tinynas.ops import ConvOp

    setup = measure.setup_device(device, "fp16")
    assert setup.clock == "cuda-events", setup.clock
    figures = []
    for op in (ConvOp("regular", 64, 64, 3, 1, 80, 80), ConvOp("regular", 128, 256, 3, 2, 40, 40),
               ConvOp("regular", 256, 256, 1, 1, 20, 20, True)):
        timing = measure.measure_op(op, setup, batch=32)
        assert timing.median_ms > 0
        figures.append(f"{op.in_channels}->{op.out_channels} k{op.kernel} @{op.height}: {timing.median_ms:.3f} ms")
    return "; ".join(figures) + f" ({setup.record()['device_name']})"


def check_tensorrt_table(device: str, work: Path) -> str:
    import onnxruntime as ort

    from tinynas.latency import build_table, load_table
    from tinynas.space import space_from_dict

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise SkipCheck(f"onnxruntime {ort.__version__} has no TensorRT provider "
                        f"({', '.join(ort.get_available_providers())})")
    space = space_from_dict(TINY_SPACE, "<gpu-check>")
    out = work / "trt-fp16.csv"
    started = time.perf_counter()
    build_table([space], out, device=device, dtype="fp16", batch=8, runtime="tensorrt", max_ops=12,
                progress=False)
    table = load_table(out, allow_incomplete=True)
    assert len(table) > 0
    return f"{len(table)} ops in {time.perf_counter() - started:.0f} s, provider {table.meta.get('provider')}"


def check_amp_distillation(device: str, work: Path, data) -> str:
    from tinynas.train.recipe import parse_train_recipe
    from tinynas.api import train_detector as train  # distils when the recipe names a teacher

    # 16 images at batch 8: one epoch is the two iterations asked for.
    train(parse_train_recipe(recipe(data, work / "teacher", device, 1), "teacher"), progress=False)
    student_doc = recipe(data, work / "student", device, 1)
    student_doc["distill"] = {"teacher": str(work / "teacher" / "last.pt"), "method": "cwd"}
    result = train(parse_train_recipe(student_doc, "student"), progress=False)
    loss = result.last_metrics.get("loss")
    return f"teacher, then a CWD-distilled student, 2 AMP iterations each; student loss {loss}"


def check_torchrun_nccl(device: str, work: Path, data) -> str:
    path = work / "ddp.yaml"
    path.write_text(yaml.safe_dump(recipe(data, work / "ddp", device, 1)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "tinynas",
                           "train", str(path), "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=150)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-1500:])
    return "1 epoch under torchrun (NCCL) finished"


class SkipCheck(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()

    import torch
    if not torch.cuda.is_available():
        print("FAIL  CUDA is not available to torch", torch.__version__)
        return 1
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(args.device)}")
    work = Path(args.out or tempfile.mkdtemp(prefix="tinynas-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    from tinynas.data import make_synthetic_dataset
    data = make_synthetic_dataset(work / "data", images=16, val_images=4, size=64, force=True)

    checks = [("CUDA-event op timing, fp16", lambda: check_event_timing(args.device, work)),
              ("TensorRT fp16 table", lambda: check_tensorrt_table(args.device, work)),
              ("AMP training with a distillation teacher", lambda: check_amp_distillation(args.device, work, data)),
              ("torchrun + NCCL, one GPU", lambda: check_torchrun_nccl(args.device, work, data))]
    failed = 0
    for name, check in checks:
        started = time.perf_counter()
        try:
            detail = check()
            status = "PASS"
        except SkipCheck as why:
            status, detail = "SKIP", str(why)
        except Exception as err:  # report every path, whatever breaks
            status, detail = "FAIL", f"{err.__class__.__name__}: {err}"
            traceback.print_exc()
            failed += 1
        print(f"{status}  {name} ({time.perf_counter() - started:.1f} s): {detail}", flush=True)
    print(f"work folder: {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
