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

Three phases (``--phase all`` runs them in turn): ``prepare`` (the dataset, the peers' untrained
files exported for its classes and timed beside the anchor, the search, one model recipe per
rung, all in ``plan.json``), ``train`` (every model with every seed; it can run on another
machine from a copy of ``--out``, e.g. ``--device cuda``: each run leaves its val detections,
``results.json``, and its CPU seconds) and ``report`` (AP from the detections with one
evaluator, every file timed again, interleaved in the same rounds, the table and the plot). A
dense network's time does not depend on its weights, so the files timed are untrained exports
of each architecture for the dataset's classes, ours and the peers' alike. A peer rung below
what the ``--model`` family reaches (its neck and head are fixed) is moved up in 2% steps to
the first reachable limit, and the table says whether that model still measures under the peer;
``--floor-model`` (default tinynas-p, a shallower neck) then gets a search of its own with a
rung at each such peer's limit itself (``tinynas-p@...`` in the tables).

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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import PEER_SCRIPT  # noqa: E402
from real_datasets import build  # noqa: E402

from tinynas.checkpoint import load_detector  # noqa: E402
from tinynas.deploy.onnx_export import export_onnx  # noqa: E402
from tinynas.design.spec import DesignSpec, check_spec  # noqa: E402
from tinynas.fileio import read_yaml  # noqa: E402
from tinynas.latency.side_by_side import SideBySide, side_by_side_from_json, time_side_by_side  # noqa: E402
from tinynas.detect.model_recipe import resolve_model_path  # noqa: E402

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


DETECTIONS = "results.json"  # each run's val detections, COCO results format (the peer script's name)


def run_measured(command: list[str], cpu_file: Path, device: str = "cpu") -> None:
    """Run ``command`` on one thread; record its CPU seconds (its own and its workers')."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, **ONE_THREAD})
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command)
    cpu_file.write_text(json.dumps({"cpu_seconds": usage.ru_utime + usage.ru_stime, "device": device,
                                    "wall_seconds": time.perf_counter() - started}) + "\n")


def tinynas_train(dataset, folder: Path, model: str, seed: int, args, sections: dict | None = None) -> None:
    """Train one tinynas run (or resume it), then write its val detections from best.pt.
    ``sections``: more recipe sections (a ``distill`` one naming a teacher)."""
    cpu_file = folder / "train_cpu.json"
    if not cpu_file.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        recipe = {"name": folder.name, "out": str(folder.resolve()), "model": str(Path(model).resolve())
                  if Path(model).is_file() else model,
                  "data": {"train_images": str(dataset.train_images.resolve()),
                           "train_annotations": str(dataset.train_annotations.resolve()),
                           "val_images": str(dataset.val_images.resolve()),
                           "val_annotations": str(dataset.val_annotations.resolve()), "size": args.size},
                  "train": {"epochs": args.epochs, "batch_size": args.batch, "seed": seed, "device": args.device},
                  **(sections or {})}
        recipe_path = folder.parent / f"{folder.name}.yaml"
        recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        command = [sys.executable, "-m", "tinynas", "train", "--quiet"]
        command += ["--resume", str(folder)] if (folder / "last.pt").is_file() else [str(recipe_path)]
        run_measured(command, cpu_file, args.device)
    if not (folder / DETECTIONS).is_file():
        (folder / DETECTIONS).write_text(json.dumps(tinynas_detections(dataset, folder, args.size)))


def tinynas_detections(dataset, folder: Path, size: int) -> list[dict]:
    """The run's best weights over the val split, as real_data.py scores them."""
    from tinynas.data.coco import CocoDataset
    from tinynas.data.pipeline import DetectionDataset
    from tinynas.train.evaluate import predict_split

    detector, _ = load_detector(folder / "best.pt")
    val = CocoDataset(dataset.val_annotations, dataset.val_images)
    return predict_split(detector, DetectionDataset(val, size), conf_threshold=0.001, iou_threshold=0.7,
                         max_detections=100)


def peer_train(dataset, folder: Path, model: str, seed: int, args) -> None:
    """Train one ultralytics run; its script writes the val detections (results.json)."""
    if (folder / DETECTIONS).is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    run_measured([args.peer_python, str(PEER_SCRIPT), "--model", model, "--data", str(dataset.yolo_yaml),
                  "--val-json", str(dataset.val_annotations), "--val-images", str(dataset.val_images),
                  "--epochs", str(args.epochs), "--imgsz", str(args.size), "--batch", str(args.batch),
                  "--seed", str(seed), "--out", str(folder),
                  "--device", "0" if args.device.startswith("cuda") else "cpu"], folder / "train_cpu.json",
                 args.device)


def rung_model(base_model: str, arch: str, folder: Path, label: str) -> Path:
    """The ``--model`` recipe with its backbone replaced by a searched rung's, written inline so
    the recipe trains on another machine too."""
    doc = read_yaml(resolve_model_path(base_model), "model recipe")
    blocks = read_yaml(Path(arch), "searched arch")["blocks"]
    doc = {**doc, "name": f"{Path(base_model).stem}-{label}", "backbone": {**doc["backbone"], "arch": blocks}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def ladder_data(dataset, folder: Path) -> Path:
    """The dataset as ``tinynas design`` reads it (the search takes its class count)."""
    data_yaml = folder / "data.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    data_yaml.write_text(yaml.safe_dump({"train_images": str(dataset.train_images),
                                         "train_annotations": str(dataset.train_annotations),
                                         "val_images": str(dataset.val_images),
                                         "val_annotations": str(dataset.val_annotations)}))
    return data_yaml


def search_ladder(dataset, args, model: str, limits_ms: list[float], folder: Path) -> list[dict]:
    """One shared search inside ``model``'s wrap, neck and head, a rung at each (reachable)
    limit; returns each rung's arch file and prediction."""
    from tinynas.design import search_stage

    data_yaml = ladder_data(dataset, folder)
    record_path = folder / "search.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())["rungs"]
    low = min(limits_ms)
    factors = tuple(sorted({round(limit / low, 6) for limit in limits_ms if limit > low * 1.0005})) or (1.5,)
    spec = check_spec(DesignSpec(data=str(data_yaml), budget=f"latency={low:.4f}ms", latency_db=args.db, model=model,
                                 space=args.space, teacher_factors=factors, candidates=args.candidates,
                                 seed=args.search_seed, size=args.size))
    record = search_stage.run(spec, len(dataset.classes), folder / "search", progress=False)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record["rungs"]


def reachable(dataset, args, model: str, data_yaml: Path, limit_ms: float, step: float = 1.02,
              tries: int = 10) -> float:
    """``limit_ms``, or the first limit 2% steps above it that the space can reach inside the
    model recipe (its neck and head are fixed, so the family has a floor)."""
    from tinynas.design import search_stage
    from tinynas.errors import UserError

    for _ in range(tries):
        spec = DesignSpec(data=str(data_yaml), budget=f"latency={limit_ms:.4f}ms", latency_db=args.db, model=model,
                          space=args.space, seed=args.search_seed, size=args.size)
        try:
            search_stage.check(check_spec(spec), len(dataset.classes))
            return limit_ms
        except UserError as err:
            if "impossible budget" not in err.reason:
                raise
            print(f"latency={limit_ms:.2f}ms (table) is below what {model} reaches; trying {limit_ms * step:.2f}",
                  flush=True)
            limit_ms *= step
    raise RuntimeError(f"no rung reachable up to {limit_ms:.2f} table ms")


def family_ladders(dataset, args, limits: list[float], base: Path) -> list[tuple[str, str, dict]]:
    """The rungs of ``--model``'s family (a limit under its floor moves up to the floor), then, for
    every limit that had to move, a rung of ``--floor-model``'s family at the limit itself:
    (model, folder name, rung) each."""
    data_yaml = ladder_data(dataset, base / "ladder")
    moved = [reachable(dataset, args, args.model, data_yaml, limit) for limit in limits]
    ladders = [(args.model, "ladder", rung) for rung in search_ladder(dataset, args, args.model, moved, base / "ladder")]
    below = [limit for limit, limit_moved in zip(limits, moved) if limit_moved > limit]
    if below and args.floor_model:
        name = f"ladder-{Path(args.floor_model).stem}"
        floor_limits = [reachable(dataset, args, args.floor_model, data_yaml, limit) for limit in below]
        rungs = search_ladder(dataset, args, args.floor_model, floor_limits, base / name)
        # A lone limit searches with a spare 1.5x rung (a design ladder has two at least): not asked for.
        ladders += [(args.floor_model, name, rung) for rung in rungs
                    if any(abs(rung["limit_ms"] / limit - 1) < 1e-4 for limit in floor_limits)]
    return ladders


def anchor(args, num_classes: int, base: Path) -> tuple[Path, float]:
    """``--model`` as shipped (untrained: weights do not change a dense network's time), exported,
    and the latency the table predicts for it."""
    from tinynas.detect.model_recipe import load_model_recipe
    from tinynas.latency.detector_model import DetectorLatencyModel

    recipe = load_model_recipe(args.model).with_num_classes(num_classes)
    path = export_untrained(args.model, num_classes, args.size, base / "anchor.onnx")
    return path, DetectorLatencyModel(args.db, recipe).predict_detector_ms(recipe.backbone.arch, args.size)


def first_timing(base: Path, paths: list[Path], names: list[str], args) -> SideBySide:
    """The peers and the anchor timed once; kept, so a resumed run searches at the same limits."""
    path = base / "peer_timing.json"
    if path.is_file():
        return side_by_side_from_json(json.loads(path.read_text()))
    timing = time_side_by_side(paths, args.size, db=args.db, rounds=args.rounds, runs=args.runs, names=names)
    path.write_text(json.dumps(timing.to_json(), indent=2) + "\n")
    return timing


def export_untrained(model: str, num_classes: int, size: int, path: Path) -> Path:
    """A tinynas model recipe, untrained, exported: a dense network's time does not depend on
    its weights, and the peers are timed the same way."""
    from tinynas.detect.detector import Detector
    from tinynas.detect.model_recipe import load_model_recipe

    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(Detector(load_model_recipe(model).with_num_classes(num_classes)).eval(), path, size=size)
    return path


def model_costs(model: str, num_classes: int) -> dict:
    from tinynas.detect.costs import recipe_costs
    from tinynas.detect.model_recipe import load_model_recipe

    total = recipe_costs(load_model_recipe(model).with_num_classes(num_classes), 640)[-1]
    return {"params_m": total.params / 1e6, "gflops": total.flops / 1e9}


def summarize(rows: list[dict]) -> dict:
    aps = [r["AP"] for r in rows]
    return {"AP_mean": statistics.mean(aps), "AP_std": statistics.stdev(aps) if len(aps) > 1 else 0.0,
            "AP50_mean": statistics.mean(r["AP50"] for r in rows), "APs": aps,
            "cpu_seconds": statistics.mean(r["cpu_seconds"] for r in rows),
            "cpu_per_epoch": statistics.mean(r.get("cpu_per_epoch", float("nan")) for r in rows),
            "seeds": [r["seed"] for r in rows]}


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


def prepare(name: str, args) -> dict:
    """Dataset, the peers' files timed beside the anchor, the shared search: ``plan.json``."""
    dataset = build(name, args.out / "data", args.out / "wheels")
    print(dataset.summary(), flush=True)
    base = args.out / f"{name}-{args.size}-e{args.epochs}-b{args.batch}"
    plan_path = base / "plan.json"
    if plan_path.is_file():
        return json.loads(plan_path.read_text())
    classes = len(dataset.classes)
    peers = {}
    for model in args.peer_model:
        path = base / "peers" / f"{Path(model).stem}.onnx"
        if not path.is_file():
            subprocess.run([args.peer_python, str(PEER_SCRIPT), "--model", model, "--data", str(dataset.yolo_yaml),
                            "--imgsz", str(args.size), "--export-untrained", str(path)], check=True,
                           env={**os.environ, **ONE_THREAD}, stdout=subprocess.DEVNULL)
        peers[Path(model).stem] = path
    anchor_onnx, anchor_predicted = anchor(args, classes, base)
    first = first_timing(base, [*peers.values(), anchor_onnx], [*peers, "anchor"], args)
    # The table was measured on another day (or machine): its ms are converted to today's with
    # the anchor, a detector it prices, timed beside the peers.
    scale = anchor_predicted / first.by_name("anchor").median_ms
    # Each rung a little under its peer: the table predicts a network within a few per cent.
    limits = [first.by_name(n).median_ms * scale * (1 - args.margin) for n in peers]
    print(f"anchor {Path(args.model).stem}: predicted {anchor_predicted:.2f} ms, measured "
          f"{first.by_name('anchor').median_ms:.2f} ms (table ms / measured ms {scale:.3f}); peers measured: "
          + ", ".join(f"{n} {first.by_name(n).median_ms:.2f} ms (rung at {ms:.2f} table ms)"
                      for n, ms in zip(peers, limits)), flush=True)
    entries = [{"name": n, "tool": "ultralytics", "role": "peer", "model": m, "onnx": str(peers[n].relative_to(args.out))}
               for n, m in zip(peers, args.peer_model)]
    entries.append({"name": Path(args.model).stem, "tool": "tinynas", "role": "shipped", "model": args.model,
                    "onnx": str(anchor_onnx.relative_to(args.out))})
    for family, ladder, rung in family_ladders(dataset, args, limits, base):
        label = f"{rung['limit_ms'] / scale:.2f}ms"
        model = rung_model(family, rung["arch"], base / ladder / "models", label)
        onnx_path = export_untrained(str(model), classes, args.size, base / ladder / f"{model.stem}.onnx")
        # The --model family's rungs keep their first names (tinynas@...), so earlier runs still resolve.
        rung_name = f"tinynas@{label}" if family == args.model else f"{Path(family).stem}@{label}"
        entries.append({"name": rung_name, "tool": "tinynas", "role": "rung", "family": Path(family).stem,
                        "model": str(model.relative_to(args.out)), "onnx": str(onnx_path.relative_to(args.out)),
                        "predicted_ms": rung["predicted_ms"] / scale})
    plan = {"dataset": name, "base": str(base.relative_to(args.out)), "classes": classes, "table_scale": scale,
            "anchor_predicted_ms": anchor_predicted, "entries": entries}
    plan_path.write_text(json.dumps(plan, indent=2) + "\n")
    return plan


def selected(plan: dict, args) -> list[dict]:
    """The plan's models that ``--only`` names (all of them without it)."""
    if not args.only:
        return plan["entries"]
    unknown = set(args.only) - {e["name"] for e in plan["entries"]}
    if unknown:
        raise SystemExit(f"pareto: --only: {', '.join(sorted(unknown))} not in {plan['dataset']}'s plan "
                         f"({', '.join(e['name'] for e in plan['entries'])})")
    return [e for e in plan["entries"] if e["name"] in args.only]


def run_folder(args, plan: dict, entry: dict, seed: int) -> Path:
    if entry["role"] != "rung":
        stem = Path(entry["model"]).stem
    elif entry["name"].startswith("tinynas@"):
        stem = entry["name"].replace("tinynas@", "ladder-")
    else:  # a --floor-model rung: tinynas-p@15.00ms -> tinynas-p-ladder-15.00ms
        stem = entry["name"].replace("@", "-ladder-")
    return args.out / plan["base"] / f"{stem}-s{seed}"


def train_all(plans: list[dict], args) -> None:
    """Every model of every plan with every seed, ``--jobs`` at a time."""
    jobs = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        datasets = {plan["dataset"]: build(plan["dataset"], args.out / "data", args.out / "wheels") for plan in plans}
        # Seed by seed: a run cut short still has every model at its first seeds.
        for seed in args.seeds:
            for plan in plans:
                dataset = datasets[plan["dataset"]]
                for entry in selected(plan, args):
                    folder = run_folder(args, plan, entry, seed)
                    if entry["tool"] == "ultralytics":
                        jobs.append(pool.submit(peer_train, dataset, folder, entry["model"], seed, args))
                    else:
                        model = str(args.out / entry["model"]) if entry["role"] == "rung" else entry["model"]
                        jobs.append(pool.submit(tinynas_train, dataset, folder, model, seed, args))
        failed = [job.exception() for job in jobs if job.exception() is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} trainings failed; the first: {failed[0]}")


def report(plan: dict, args) -> dict:
    """AP of every run from its detections (one evaluator), every file timed interleaved."""
    from tinynas.train.coco_eval import coco_metrics

    dataset = build(plan["dataset"], args.out / "data", args.out / "wheels")
    base = args.out / plan["base"]
    entries = selected(plan, args)
    timing = time_side_by_side([args.out / e["onnx"] for e in entries], args.size, db=args.db,
                               rounds=args.rounds, runs=args.runs, names=[e["name"] for e in entries])
    models = []
    for entry in entries:
        rows = []
        for seed in args.seeds:
            folder = run_folder(args, plan, entry, seed)
            if not (folder / DETECTIONS).is_file():
                print(f"{entry['name']} seed {seed}: not trained ({folder}); left out", flush=True)
                continue
            metrics = coco_metrics(dataset.val_annotations, json.loads((folder / DETECTIONS).read_text()))
            cpu = json.loads((folder / "train_cpu.json").read_text())
            rows.append({"seed": seed, "AP": metrics["AP"], "AP50": metrics["AP50"], "cpu_seconds": cpu["cpu_seconds"],
                         "cpu_per_epoch": cpu["cpu_seconds"] / args.epochs, "trained_on": cpu.get("device", "cpu")})
        if not rows:
            continue
        if entry["tool"] == "ultralytics":
            meta = json.loads((run_folder(args, plan, entry, rows[0]["seed"]) / "meta.json").read_text())
            costs = {"params_m": meta["params"] / 1e6, "gflops": meta["gflops"]}
        else:
            model = str(args.out / entry["model"]) if entry["role"] == "rung" else entry["model"]
            costs = model_costs(model, plan["classes"])
        t = timing.by_name(entry["name"])
        models.append({"name": entry["name"], "tool": entry["tool"], "role": entry["role"], "median_ms": t.median_ms,
                       "q25_ms": t.q25_ms, "q75_ms": t.q75_ms, "predicted_ms": entry.get("predicted_ms"),
                       **summarize(rows), **costs, "trained_on": sorted({r["trained_on"] for r in rows})})
    lines = comparisons(models)
    print_dataset(plan["dataset"], models, lines, timing)
    plot(plan["dataset"], models, base / "pareto.png")
    return {"dataset": dataset.summary(), "models": models, "comparisons": lines, "timing": timing.to_json(),
            "table_scale": plan["table_scale"], "plot": str(base / "pareto.png")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", required=True, help="Python of a venv with ultralytics and onnx")
    parser.add_argument("--peer-model", nargs="+", default=["yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"])
    parser.add_argument("--datasets", nargs="+", default=["trees", "nuclei", "pedestrians"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--model", default="tinynas-n", help="model recipe whose wrap, neck and head the ladder keeps")
    parser.add_argument("--floor-model", default="tinynas-p", help="model recipe whose family takes the rungs "
                        "under --model's floor (default tinynas-p, its neck shallower); '' to move them up instead")
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
    parser.add_argument("--phase", choices=("all", "prepare", "train", "report"), default="all",
                        help="prepare (peers timed, the search), train (every run; can run on another machine "
                             "with --device cuda, from a copy of --out), report (AP and the final timing)")
    parser.add_argument("--device", default="cpu", help="where the trainings run (cpu or cuda)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="train and report only these models of the "
                        "plan (e.g. yolo11n tinynas@19.01ms)")
    args = parser.parse_args()
    if args.phase in ("all", "prepare"):
        plans = [prepare(name, args) for name in args.datasets]
    else:
        plans = [json.loads(next(args.out.glob(f"{name}-{args.size}-e{args.epochs}-b{args.batch}/plan.json"))
                            .read_text()) for name in args.datasets]
    if args.phase in ("all", "train"):
        train_all(plans, args)
    if args.phase in ("all", "report"):
        doc = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "datasets": [report(plan, args) for plan in plans]}
        (args.out / "pareto.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"\nwrote {args.out / 'pareto.json'}")


if __name__ == "__main__":
    main()
