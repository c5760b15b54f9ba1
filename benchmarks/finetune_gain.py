"""Does fine-tuning pay? A model trained on one real dataset, fine-tuned on another, against the
same model trained from scratch on that other set at the same short schedule.

For each ``SOURCE:TARGET`` pair of ``--pairs`` (real datasets of ``real_datasets.py``):

1. the source model: ``--model`` trained on SOURCE with ``--source-epochs`` at seed 0 (or the
   checkpoint given with ``--source-checkpoint SOURCE=PATH``, e.g. a finished benchmark run);
2. on TARGET, with each of ``--seeds`` and ``--epochs`` epochs (the shipped defaults otherwise):
   ``scratch`` (Gaussian initialisation, as every other benchmark) and ``finetuned``
   (``train.init`` = the source's best.pt: every tensor loaded, the class rows of a class the
   source did not have initialised fresh);
3. both scored by one evaluator (pycocotools on TARGET's val split, conf 0.001, IoU 0.7, at most
   100 detections an image, from each run's best weights), as ``pareto.py`` scores.

Printed per pair: AP and AP50 per seed for both arms, the mean +- std, and the gain in AP points
(mean of the per-seed differences, and how many seeds gained). Everything also goes to
``finetune.json``. Trainings run ``--jobs`` at a time, each process on one thread; finished runs
are read back, killed ones resume from their ``last.pt``.

    python benchmarks/finetune_gain.py [--pairs pedestrians:trees trees:pedestrians trees:nuclei] \
        [--seeds 0 1 2] [--epochs 30] [--source-checkpoint trees=runs/pareto/.../best.pt] [--out runs/finetune]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pareto import DETECTIONS, run_measured, tinynas_detections  # noqa: E402
from real_datasets import build  # noqa: E402

from tinynas.train.coco_eval import coco_metrics  # noqa: E402

ARMS = ("scratch", "finetuned")


def train_run(dataset, folder: Path, args, seed: int, epochs: int, init: Path | None = None) -> None:
    """Train one run (or resume it, or read it back when finished), then write its val detections."""
    cpu_file = folder / "train_cpu.json"
    if not cpu_file.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        train = {"epochs": epochs, "batch_size": args.batch, "seed": seed}
        if init is not None:
            train["init"] = str(init.resolve())
        recipe = {"name": folder.name, "out": str(folder.resolve()), "model": args.model,
                  "data": {"train_images": str(dataset.train_images.resolve()),
                           "train_annotations": str(dataset.train_annotations.resolve()),
                           "val_images": str(dataset.val_images.resolve()),
                           "val_annotations": str(dataset.val_annotations.resolve()), "size": args.size},
                  "train": train}
        recipe_path = folder.parent / f"{folder.name}.yaml"
        recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        command = [sys.executable, "-m", "tinynas", "train", "--quiet"]
        command += ["--resume", str(folder)] if (folder / "last.pt").is_file() else [str(recipe_path)]
        run_measured(command, cpu_file)
    if not (folder / DETECTIONS).is_file():
        (folder / DETECTIONS).write_text(json.dumps(tinynas_detections(dataset, folder, args.size)))


def source_checkpoint(name: str, args, datasets: dict) -> Path:
    """The source model's best.pt: given, or trained here once (seed 0)."""
    if name in args.source_checkpoint:
        return args.source_checkpoint[name]
    folder = args.out / f"source-{name}-e{args.source_epochs}-s0"
    train_run(datasets[name], folder, args, 0, args.source_epochs)
    return folder / "best.pt"


def pair_folder(args, source: str, target: str, arm: str, seed: int) -> Path:
    # scratch does not depend on the source: one set of scratch runs per target serves every pair.
    stem = f"{target}-scratch" if arm == "scratch" else f"{target}-from-{source}"
    return args.out / f"{stem}-e{args.epochs}-s{seed}"


def train_all(pairs: list[tuple[str, str]], datasets: dict, args) -> None:
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        sources = {s: pool.submit(source_checkpoint, s, args, datasets) for s in sorted({s for s, _ in pairs})}
        jobs = []
        for seed in args.seeds:  # seed by seed: a run cut short has both arms at its first seeds
            for source, target in pairs:
                init = sources[source].result()
                for arm in ARMS:
                    jobs.append(pool.submit(train_run, datasets[target], pair_folder(args, source, target, arm, seed),
                                            args, seed, args.epochs, init if arm == "finetuned" else None))
        failed = [job.exception() for job in jobs if job.exception() is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} trainings failed; the first: {failed[0]}")


def report(source: str, target: str, datasets: dict, args) -> dict:
    dataset = datasets[target]
    rows = {arm: [] for arm in ARMS}
    for seed in args.seeds:
        for arm in ARMS:
            folder = pair_folder(args, source, target, arm, seed)
            detections = json.loads((folder / DETECTIONS).read_text())
            metrics = coco_metrics(dataset.val_annotations, detections)
            cpu = json.loads((folder / "train_cpu.json").read_text())["cpu_seconds"]
            rows[arm].append({"seed": seed, "AP": metrics["AP"], "AP50": metrics["AP50"], "cpu_seconds": cpu})
    gains = [(f["AP"] - s["AP"]) * 100 for s, f in zip(rows["scratch"], rows["finetuned"])]
    print(f"\n{source} -> {target}: {args.model}, {args.epochs} epochs, {args.size} px, batch {args.batch}")
    print("| seed | scratch AP | scratch AP50 | fine-tuned AP | fine-tuned AP50 | gain (AP points) |")
    print("|---|---|---|---|---|---|")
    for s, f, gain in zip(rows["scratch"], rows["finetuned"], gains):
        print(f"| {s['seed']} | {s['AP']:.4f} | {s['AP50']:.4f} | {f['AP']:.4f} | {f['AP50']:.4f} | {gain:+.2f} |")
    summary = {}
    for arm in ARMS:
        aps = [r["AP"] for r in rows[arm]]
        summary[arm] = {"AP_mean": statistics.mean(aps), "AP_std": statistics.stdev(aps) if len(aps) > 1 else 0.0,
                        "AP50_mean": statistics.mean(r["AP50"] for r in rows[arm]),
                        "cpu_seconds": statistics.mean(r["cpu_seconds"] for r in rows[arm])}
    s, f = summary["scratch"], summary["finetuned"]
    print(f"| mean | {s['AP_mean']:.4f} +- {s['AP_std']:.4f} | {s['AP50_mean']:.4f} | "
          f"{f['AP_mean']:.4f} +- {f['AP_std']:.4f} | {f['AP50_mean']:.4f} | {statistics.mean(gains):+.2f} "
          f"({sum(g > 0 for g in gains)} of {len(gains)} seeds gain) |")
    return {"source": source, "target": target, "rows": rows, "summary": summary, "gain_points": gains}


def source_pair(text: str) -> tuple[str, str]:
    source, sep, target = text.partition(":")
    if not sep or not source or not target or source == target:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SOURCE:TARGET, two different datasets")
    return source, target


def named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=CHECKPOINT, an existing file")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=source_pair, nargs="+",
                        default=[("pedestrians", "trees"), ("trees", "pedestrians"), ("trees", "nuclei")])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30, help="the short schedule on the target")
    parser.add_argument("--source-epochs", type=int, default=100)
    parser.add_argument("--source-checkpoint", type=named_path, nargs="*", default=[], metavar="NAME=PATH",
                        help="a source dataset's trained --model checkpoint, instead of training it here")
    parser.add_argument("--model", default="tinynas-n")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time, one thread each")
    parser.add_argument("--data", type=Path, default=Path("runs/real-data/data"))
    parser.add_argument("--wheels", type=Path, default=Path("runs/real-data/wheels"))
    parser.add_argument("--out", type=Path, default=Path("runs/finetune"))
    args = parser.parse_args()
    args.source_checkpoint = dict(args.source_checkpoint)
    names = sorted({name for pair in args.pairs for name in pair})
    datasets = {name: build(name, args.data, args.wheels) for name in names}
    args.out.mkdir(parents=True, exist_ok=True)
    train_all(args.pairs, datasets, args)
    doc = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "pairs": [report(source, target, datasets, args) for source, target in args.pairs]}
    (args.out / "finetune.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out / 'finetune.json'}")


if __name__ == "__main__":
    main()
