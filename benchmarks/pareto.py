"""AP at equal *measured* latency: tinynas's searched ladder against the YOLO nanos, on the chip.

For each real dataset (``real_datasets.py``), in one run:

1. every peer (ultralytics, ``--peer-model``, default YOLOv8n, YOLO11n, YOLO26n) trains from
   scratch with each of ``--seeds``, on its own defaults, and its seed-0 weights are exported to
   ONNX at the run's size;
2. the peers' files are timed side by side (``tinynas latency time``'s harness) in the runtime,
   device and thread count of ``--db``, the table the search prices with, beside an anchor
   (``--model`` as shipped) whose predicted / measured ratio converts the peers' measured ms
   into the table's (a table measured on another day or machine is off by a factor);
3. one shared search (``tinynas design``'s search stage: whole-detector pricing, the
   ``--model`` recipe's wrap, neck and head, the dataset's classes) with one ladder rung at each
   peer's measured latency;
4. each rung's model trains with every seed (alone: distillation is judged elsewhere), and so
   does ``--model`` itself (the shipped tinynas-n);
5. every ONNX file — peers and ours — is timed again, interleaved in the same rounds, and those
   figures are the table's latency column; every model's AP is the mean over the seeds, all
   scored by the same evaluator (pycocotools on the val split, conf 0.001, IoU 0.7, at most 100
   detections an image, from each tool's best weights).

Printed per dataset: model, measured ms (median, IQR), AP mean +- std, AP50, training CPU
seconds (and per epoch), params, GFLOPs at 640; then for each peer our AP / its AP for the most
accurate of our models that measures at or below its latency, and our latency / its latency for
the fastest of ours whose AP reaches its AP. ``pareto.png`` per dataset: AP against measured
latency, the peers labelled, our ladder as a line. Everything also goes to ``pareto.json``.

    python benchmarks/pareto.py --peer-python PEER/bin/python [--datasets trees nuclei ...] \
        [--seeds 0 1 2] [--epochs 100] [--size 320] [--batch 16] [--jobs 2] [--out runs/pareto]

Trainings run ``--jobs`` at a time, each process on one thread (``OMP_NUM_THREADS=1``: OpenMP
spin-waiting otherwise slows both ~10x); CPU seconds are each training process's own (and its
loader workers'), read with ``wait4``. Finished runs are read back, not redone; a killed
tinynas training resumes from its ``last.pt``, a killed search from its checkpoint. The peer's
venv: ``python3 -m venv PEER && PEER/bin/pip install torch==2.14.1 torchvision==0.29.1
ultralytics==8.4.190 onnx``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import PEER_SCRIPT, peer_run, tinynas_run  # noqa: E402
from real_datasets import build  # noqa: E402

from tinynas.checkpoint import load_detector  # noqa: E402
from tinynas.deploy.onnx_export import export_onnx  # noqa: E402
from tinynas.design.spec import DesignSpec, check_spec  # noqa: E402
from tinynas.fileio import read_yaml  # noqa: E402
from tinynas.latency.side_by_side import SideBySide, side_by_side_from_json, time_side_by_side  # noqa: E402
from tinynas.detect.model_recipe import resolve_model_path  # noqa: E402

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def run_measured(command: list[str], cpu_file: Path) -> None:
    """Run ``command`` on one thread; record its CPU seconds (its own and its workers')."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, **ONE_THREAD})
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command)
    cpu_file.write_text(json.dumps({"cpu_seconds": usage.ru_utime + usage.ru_stime,
                                    "wall_seconds": time.perf_counter() - started}) + "\n")


class MeasuredRuns:
    """``real_data``'s runs with each training's CPU seconds taken around its process."""

    def __init__(self, args):
        self.args = args
        # The evaluator swaps sys.stdout to hush pycocotools; two threads doing that at once
        # leave it pointing at a buffer.
        self.evaluating = threading.Lock()

    def tinynas(self, dataset, folder: Path, model: str, seed: int) -> dict:
        cpu_file = folder / "train_cpu.json"
        if not (folder / "train_seconds.txt").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            recipe = {"name": folder.name, "out": str(folder), "model": model,
                      "data": {"train_images": str(dataset.train_images),
                               "train_annotations": str(dataset.train_annotations),
                               "val_images": str(dataset.val_images), "val_annotations": str(dataset.val_annotations),
                               "size": self.args.size},
                      "train": {"epochs": self.args.epochs, "batch_size": self.args.batch, "seed": seed}}
            recipe_path = folder.parent / f"{folder.name}.yaml"
            recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
            command = [sys.executable, "-m", "tinynas", "train", "--quiet"]
            command += ["--resume", str(folder)] if (folder / "last.pt").is_file() else [str(recipe_path)]
            run_measured(command, cpu_file)
            (folder / "train_seconds.txt").write_text(f"{json.loads(cpu_file.read_text())['wall_seconds']:.1f}\n")
        with self.evaluating:
            row = tinynas_run(dataset, folder, model, self.args, seed)  # reads the finished run back
        return {**row, **self._cpu(cpu_file)}

    def peer(self, dataset, folder: Path, model: str, seed: int) -> dict:
        cpu_file = folder / "train_cpu.json"
        if not (folder / "results.json").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            run_measured([self.args.peer_python, str(PEER_SCRIPT), "--model", model, "--data",
                          str(dataset.yolo_yaml), "--val-json", str(dataset.val_annotations), "--val-images",
                          str(dataset.val_images), "--epochs", str(self.args.epochs), "--imgsz", str(self.args.size),
                          "--batch", str(self.args.batch), "--seed", str(seed), "--out", str(folder),
                          *(["--export-onnx"] if seed == self.args.seeds[0] else [])], cpu_file)
        with self.evaluating:
            row = peer_run(dataset, folder, model, self.args, seed)
        return {**row, **self._cpu(cpu_file)}

    def _cpu(self, cpu_file: Path) -> dict:
        if not cpu_file.is_file():
            return {"cpu_seconds": float("nan")}
        cpu = json.loads(cpu_file.read_text())["cpu_seconds"]
        return {"cpu_seconds": cpu, "cpu_per_epoch": cpu / self.args.epochs}


def rung_model(base_model: str, arch: str, folder: Path, label: str) -> Path:
    """The ``--model`` recipe with its backbone replaced by a searched rung's."""
    doc = read_yaml(resolve_model_path(base_model), "model recipe")
    doc = {**doc, "name": f"{Path(base_model).stem}-{label}", "backbone": {**doc["backbone"], "arch": arch}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def search_ladder(dataset, args, limits_ms: list[float], folder: Path) -> list[dict]:
    """One shared search, a rung at each limit; returns each rung's arch file and prediction."""
    from tinynas.design import search_stage

    data_yaml = folder / "data.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    data_yaml.write_text(yaml.safe_dump({"train_images": str(dataset.train_images),
                                         "train_annotations": str(dataset.train_annotations),
                                         "val_images": str(dataset.val_images),
                                         "val_annotations": str(dataset.val_annotations)}))
    low = min(limits_ms)
    factors = tuple(sorted({round(limit / low, 6) for limit in limits_ms if limit > low * 1.0005})) or (1.5,)
    spec = check_spec(DesignSpec(data=str(data_yaml), budget=f"latency={low:.4f}ms", db=args.db, model=args.model,
                                 space=args.space, teacher_factors=factors, candidates=args.candidates,
                                 seed=args.search_seed, size=args.size))
    record_path = folder / "search.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())["rungs"]
    record = search_stage.run(replace(spec), len(dataset.classes), folder / "search", progress=False)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record["rungs"]


def anchor(args, num_classes: int, base: Path) -> tuple[Path, float]:
    """``--model`` as shipped (untrained: weights do not change a dense network's time), exported,
    and the latency the table predicts for it."""
    from tinynas.detect.detector import Detector
    from tinynas.detect.model_recipe import load_model_recipe
    from tinynas.latency.detector_model import DetectorLatencyModel

    recipe = load_model_recipe(args.model).with_num_classes(num_classes)
    path = base / "anchor.onnx"
    if not path.is_file():
        base.mkdir(parents=True, exist_ok=True)
        export_onnx(Detector(recipe).eval(), path, size=args.size)
    return path, DetectorLatencyModel(args.db, recipe).predict_detector_ms(recipe.backbone.arch, args.size)


def first_timing(base: Path, paths: list[Path], names: list[str], args) -> SideBySide:
    """The peers and the anchor timed once; kept, so a resumed run searches at the same limits."""
    path = base / "peer_timing.json"
    if path.is_file():
        return side_by_side_from_json(json.loads(path.read_text()))
    timing = time_side_by_side(paths, args.size, db=args.db, rounds=args.rounds, runs=args.runs, names=names)
    path.write_text(json.dumps(timing.to_json(), indent=2) + "\n")
    return timing


def export_tinynas(folder: Path, size: int) -> Path:
    onnx_path = folder / f"{folder.name}.onnx"
    if not onnx_path.is_file():
        detector, _ = load_detector(folder / "best.pt")
        export_onnx(detector, onnx_path, size=size)
    return onnx_path


def summarize(rows: list[dict]) -> dict:
    aps = [r["AP"] for r in rows]
    return {"AP_mean": statistics.mean(aps), "AP_std": statistics.stdev(aps) if len(aps) > 1 else 0.0,
            "AP50_mean": statistics.mean(r["AP50"] for r in rows), "APs": aps,
            "cpu_seconds": statistics.mean(r["cpu_seconds"] for r in rows),
            "cpu_per_epoch": statistics.mean(r.get("cpu_per_epoch", float("nan")) for r in rows),
            "params_m": rows[0]["params_m"], "gflops": rows[0]["gflops"], "seeds": [r["seed"] for r in rows]}


def comparisons(models: list[dict]) -> list[dict]:
    """For each peer: ours at <= its latency (AP ratio) and ours at >= its AP (latency ratio)."""
    ours = [m for m in models if m["tool"] == "tinynas"]
    lines = []
    for peer in (m for m in models if m["tool"] == "ultralytics"):
        line = {"peer": peer["name"], "peer_ms": peer["median_ms"], "peer_AP": peer["AP_mean"]}
        within = [m for m in ours if m["median_ms"] <= peer["median_ms"]]
        if within:
            best = max(within, key=lambda m: m["AP_mean"])
            line.update(ours_at_latency=best["name"], ap_ratio=best["AP_mean"] / peer["AP_mean"]
                        if peer["AP_mean"] > 0 else float("inf"), ours_ms=best["median_ms"], ours_AP=best["AP_mean"])
        reaching = [m for m in ours if m["AP_mean"] >= peer["AP_mean"]]
        if reaching:
            fastest = min(reaching, key=lambda m: m["median_ms"])
            line.update(ours_at_ap=fastest["name"], latency_ratio=fastest["median_ms"] / peer["median_ms"])
        lines.append(line)
    return lines


def print_dataset(name: str, models: list[dict], lines: list[dict], timing) -> None:
    s = timing.settings
    print(f"\n## {name}: {s['runtime']} {s.get('runtime_version')}, {s['threads']} thread(s), {s.get('device_name')}, "
          f"{timing.rounds} interleaved rounds x {timing.runs_per_round} runs at {timing.size} px")
    print("| model | measured ms (IQR) | AP (mean +- std) | AP50 | train CPU s | CPU s / epoch | params | GFLOPs@640 |")
    print("|---|---|---|---|---|---|---|---|")
    for m in sorted(models, key=lambda m: m["median_ms"]):
        print(f"| {m['name']} | {m['median_ms']:.2f} ({m['q25_ms']:.2f}-{m['q75_ms']:.2f}) | "
              f"{m['AP_mean']:.4f} +- {m['AP_std']:.4f} | {m['AP50_mean']:.4f} | {m['cpu_seconds']:.0f} | "
              f"{m['cpu_per_epoch']:.2f} | {m['params_m']:.2f} M | {m['gflops']:.2f} |")
    reference = next((m for m in models if m["name"] == "yolov8n"), None)
    for line in lines:
        text = f"- vs {line['peer']} ({line['peer_ms']:.2f} ms, AP {line['peer_AP']:.4f}): "
        text += (f"AP ratio {line['ap_ratio']:.2f}x ({line['ours_at_latency']}, {line['ours_ms']:.2f} ms)"
                 if "ap_ratio" in line else "none of ours measures at or below its latency")
        text += (f"; latency ratio {line['latency_ratio']:.2f}x ({line['ours_at_ap']})" if "latency_ratio" in line
                 else "; none of ours reaches its AP")
        print(text)
    if reference:
        for m in models:
            if m["tool"] == "tinynas":
                print(f"- training CPU per epoch, {m['name']} / yolov8n: {m['cpu_per_epoch'] / reference['cpu_per_epoch']:.2f}x")


def plot(name: str, models: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ladder = sorted((m for m in models if m["role"] == "rung"), key=lambda m: m["median_ms"])
    ax.errorbar([m["median_ms"] for m in ladder], [m["AP_mean"] for m in ladder], yerr=[m["AP_std"] for m in ladder],
                fmt="-o", color="tab:blue", capsize=3, label="tinynas design ladder")
    for m in models:
        if m["role"] == "rung":
            continue
        color = "tab:blue" if m["tool"] == "tinynas" else "tab:red"
        ax.errorbar([m["median_ms"]], [m["AP_mean"]], yerr=[m["AP_std"]], fmt="s" if m["tool"] == "tinynas" else "^",
                    color=color, capsize=3)
        ax.annotate(m["name"], (m["median_ms"], m["AP_mean"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("measured latency (ms per image)")
    ax.set_ylabel("COCO AP (mean over seeds)")
    ax.set_title(f"{name}: AP against measured latency")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_dataset(name: str, args, runs: MeasuredRuns, pool: ThreadPoolExecutor) -> dict:
    dataset = build(name, args.out / "data", args.out / "wheels")
    print(dataset.summary(), flush=True)
    base = args.out / f"{name}-{args.size}-e{args.epochs}-b{args.batch}"
    peer_jobs = {(model, seed): pool.submit(runs.peer, dataset, base / f"{Path(model).stem}-s{seed}", model, seed)
                 for model in args.peer_model for seed in args.seeds}
    own_jobs = {seed: pool.submit(runs.tinynas, dataset, base / f"{Path(args.model).stem}-s{seed}", args.model, seed)
                for seed in args.seeds}
    peers = {}
    for model in args.peer_model:
        rows = [peer_jobs[(model, seed)].result() for seed in args.seeds]
        onnx_path = base / f"{Path(model).stem}-s{args.seeds[0]}" / "best.onnx"
        peers[Path(model).stem] = {"rows": rows, "onnx": onnx_path}
    anchor_onnx, anchor_predicted = anchor(args, len(dataset.classes), base)
    first = first_timing(base, [*(p["onnx"] for p in peers.values()), anchor_onnx], [*peers, "anchor"], args)
    # The table was measured on another day (or machine): its ms are converted to today's with
    # the anchor, a detector it prices, timed beside the peers.
    scale = anchor_predicted / first.by_name("anchor").median_ms
    # Each rung a little under its peer: the table predicts a network within a few per cent.
    limits = [first.by_name(n).median_ms * scale * (1 - args.margin) for n in peers]
    print(f"anchor {Path(args.model).stem}: predicted {anchor_predicted:.2f} ms, measured "
          f"{first.by_name('anchor').median_ms:.2f} ms (table ms / measured ms {scale:.3f}); peers measured: "
          + ", ".join(f"{n} {first.by_name(n).median_ms:.2f} ms (table {ms:.2f})" for n, ms in zip(peers, limits)),
          flush=True)
    rungs = search_ladder(dataset, args, limits, base / "ladder")
    rung_jobs = {}
    for rung in rungs:
        label = f"{rung['limit_ms']:.2f}ms"
        model_path = rung_model(args.model, rung["arch"], base / "ladder" / "models", label)
        for seed in args.seeds:
            rung_jobs[(label, seed)] = pool.submit(runs.tinynas, dataset, base / f"ladder-{label}-s{seed}",
                                                   str(model_path), seed)
    entries = [{"name": n, "tool": "ultralytics", "role": "peer", "onnx": p["onnx"], "rows": p["rows"]}
               for n, p in peers.items()]
    own_rows = [own_jobs[seed].result() for seed in args.seeds]
    entries.append({"name": Path(args.model).stem, "tool": "tinynas", "role": "shipped",
                    "onnx": export_tinynas(Path(own_rows[0]["folder"]), args.size), "rows": own_rows})
    for rung in rungs:
        label = f"{rung['limit_ms']:.2f}ms"
        rows = [rung_jobs[(label, seed)].result() for seed in args.seeds]
        entries.append({"name": f"tinynas@{label}", "tool": "tinynas", "role": "rung", "predicted_ms": rung["predicted_ms"],
                        "onnx": export_tinynas(Path(rows[0]["folder"]), args.size), "rows": rows})
    timing = time_side_by_side([e["onnx"] for e in entries], args.size, db=args.db, rounds=args.rounds, runs=args.runs,
                               names=[e["name"] for e in entries])
    models = []
    for e in entries:
        t = timing.by_name(e["name"])
        models.append({"name": e["name"], "tool": e["tool"], "role": e["role"], "median_ms": t.median_ms,
                       "q25_ms": t.q25_ms, "q75_ms": t.q75_ms, "predicted_ms": e.get("predicted_ms"),
                       **summarize(e["rows"])})
    lines = comparisons(models)
    print_dataset(name, models, lines, timing)
    plot(name, models, base / "pareto.png")
    return {"dataset": dataset.summary(), "models": models, "comparisons": lines, "timing": timing.to_json(),
            "first_peer_timing": first.to_json(), "table_scale": scale, "plot": str(base / "pareto.png")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", required=True, help="Python of a venv with ultralytics and onnx")
    parser.add_argument("--peer-model", nargs="+", default=["yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"])
    parser.add_argument("--datasets", nargs="+", default=["trees", "nuclei"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--model", default="tinynas-n", help="model recipe whose wrap, neck and head the ladder keeps")
    parser.add_argument("--space", default="k1kx")
    parser.add_argument("--db", default="cpu-ort-fp32-tinynas-n", help="latency table the search prices with; "
                        "its runtime, device and threads time every model")
    parser.add_argument("--candidates", type=int, default=20000)
    parser.add_argument("--search-seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--margin", type=float, default=0.03,
                        help="each rung searched this fraction under its peer's latency (default 0.03)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time, one thread each")
    parser.add_argument("--out", type=Path, default=Path("runs/pareto"))
    args = parser.parse_args()
    report = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "datasets": []}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for name in args.datasets:
            report["datasets"].append(run_dataset(name, args, MeasuredRuns(args), pool))
            (args.out / "pareto.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out / 'pareto.json'}")


if __name__ == "__main__":
    main()
