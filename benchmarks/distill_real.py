"""When does distillation pay on real data? Gain against the teacher's lead, per loss and teacher.

On each real dataset (``--datasets``, built as ``pareto.py`` builds them) the student
(``--student``, tinynas-n) is trained plain with each of ``--seeds``, each teacher of
``--teachers`` (model recipes of several sizes) once (seed 0), and the student distilled from
every teacher with every method of ``--methods`` (``cwd``, ``mgd``, ``mimic`` on the neck,
``logit`` on the head outputs where the heads match) at the shipped defaults
(``loss_weight: auto`` with the teacher's worth; ``--worth-margin`` to compare), each seed. With
``--chain L M`` also the chain L -> M -> S against L -> S and M -> S at equal student epochs
(the teacher-assistant question). Every training resumes; finished runs are read back. One
evaluator: pycocotools on val, conf 0.001, IoU 0.7, 100 detections, best weights.

Prints, per dataset: the teachers' AP and lead over the plain student (their AP / the plain
mean - 1), each (teacher, method)'s mean AP +- std over seeds and gain in AP points; writes
``distill_real.json`` and ``gain_vs_lead.png`` (gain against the teacher's lead, every
dataset).

    python benchmarks/distill_real.py --data runs/pareto/data --wheels runs/pareto/wheels \
        [--datasets trees nuclei pedestrians] [--teachers damoyolo-t damoyolo-s] \
        [--methods cwd mgd mimic logit] [--seeds 0 1 2] [--chain damoyolo-s damoyolo-t] [--out runs/distill-real]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pareto import DETECTIONS, tinynas_train  # noqa: E402
from real_datasets import build  # noqa: E402


def ap_of(folder: Path, dataset) -> float | None:
    from tinynas.train.coco_eval import coco_metrics

    found = folder / DETECTIONS
    return coco_metrics(dataset.val_annotations, json.loads(found.read_text()))["AP"] if found.is_file() else None


def distill_section(teacher_folder: Path, method: str, args) -> dict:
    return {"distill": {"teacher": str((teacher_folder / "best.pt").resolve()), "method": method,
                        "worth_margin": args.worth_margin}}


def plan_runs(root: Path, args) -> list[tuple]:
    """(wave, folder, model, seed, teacher folder, method) for every training of one dataset: a
    run of wave k distils from a run of an earlier wave (teachers and plain runs are wave 0)."""
    runs = {root / f"teacher-{t}-s0": (0, t, 0, None, None) for t in dict.fromkeys([*args.teachers, *args.chain])}
    direct = [(t, m) for t in args.teachers for m in args.methods]
    if args.chain:  # the chain is compared with each of its models distilling the student directly
        direct += [(t, "cwd") for t in args.chain if (t, "cwd") not in direct]
    for seed in args.seeds:
        runs[root / f"{args.student}-plain-s{seed}"] = (0, args.student, seed, None, None)
        for teacher, method in direct:
            runs[root / f"{args.student}-{method}-from-{teacher}-s{seed}"] = (1, args.student, seed,
                                                                             root / f"teacher-{teacher}-s0", method)
        if args.chain:
            large, middle = args.chain
            mid = root / f"chain-{middle}-from-{large}-s{seed}"
            runs[mid] = (1, middle, seed, root / f"teacher-{large}-s0", "cwd")
            runs[root / f"chain-{args.student}-from-{middle}-from-{large}-s{seed}"] = (2, args.student, seed, mid, "cwd")
    return [(wave, folder, model, seed, teacher, method) for folder, (wave, model, seed, teacher, method) in runs.items()]


def train_dataset(dataset, root: Path, args) -> None:
    runs = plan_runs(root, args)
    for wave in sorted({r[0] for r in runs}):  # a wave's teachers finished in the waves before it
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            jobs = [pool.submit(tinynas_train, dataset, folder, model, seed, args,
                                distill_section(teacher, method, args) if teacher else None)
                    for w, folder, model, seed, teacher, method in runs if w == wave]
            for job in jobs:
                job.result()


def report(name: str, dataset, args) -> dict:
    root = args.out / name
    plain = [a for a in (ap_of(root / f"{args.student}-plain-s{s}", dataset) for s in args.seeds) if a is not None]
    plain_mean = statistics.mean(plain) if plain else float("nan")
    rows = []
    print(f"\n{name}: {args.student} plain {plain_mean:.4f} +- {statistics.pstdev(plain) if plain else 0:.4f} "
          f"({len(plain)} seeds)")
    print("| teacher | teacher AP | lead | method | distilled AP | std | gain (points) | seeds |")
    print("|---|---|---|---|---|---|---|---|")
    for teacher in args.teachers:
        teacher_ap = ap_of(root / f"teacher-{teacher}-s0", dataset)
        lead = teacher_ap / plain_mean - 1 if teacher_ap and plain else float("nan")
        for method in args.methods:
            aps = [a for a in (ap_of(root / f"{args.student}-{method}-from-{teacher}-s{s}", dataset)
                               for s in args.seeds) if a is not None]
            if not aps:
                continue
            mean, std = statistics.mean(aps), statistics.pstdev(aps)
            rows.append({"teacher": teacher, "teacher_AP": teacher_ap, "lead": lead, "method": method, "AP": mean,
                         "std": std, "gain_points": (mean - plain_mean) * 100, "seeds": len(aps)})
            print(f"| {teacher} | {teacher_ap:.4f} | {lead:+.0%} | {method} | {mean:.4f} | {std:.4f} | "
                  f"{(mean - plain_mean) * 100:+.2f} | {len(aps)} |")
    chain = {}
    if args.chain:
        large, middle = args.chain
        for label, prefix in ((f"{large} -> {middle} -> {args.student}", f"chain-{args.student}-from-{middle}-from-{large}"),
                              (f"{large} -> {args.student}", f"{args.student}-cwd-from-{large}"),
                              (f"{middle} -> {args.student}", f"{args.student}-cwd-from-{middle}")):
            aps = [a for a in (ap_of(root / f"{prefix}-s{s}", dataset) for s in args.seeds) if a is not None]
            if aps:
                chain[label] = {"AP": statistics.mean(aps), "std": statistics.pstdev(aps), "seeds": len(aps)}
                print(f"{label}: {statistics.mean(aps):.4f} +- {statistics.pstdev(aps):.4f} "
                      f"({(statistics.mean(aps) - plain_mean) * 100:+.2f} points, {len(aps)} seeds)")
    return {"dataset": name, "plain": {"AP": plain_mean, "runs": plain}, "rows": rows, "chain": chain}


def plot(tables: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, table in enumerate(tables):
        rows = table["rows"]
        ax.scatter([r["lead"] * 100 for r in rows], [r["gain_points"] for r in rows], color=f"C{k}",
                   label=table["dataset"])
        for r in rows:
            ax.annotate(r["method"], (r["lead"] * 100, r["gain_points"]), fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("teacher's lead over the plain student (% of its AP)")
    ax.set_ylabel("distillation gain (AP points)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "gain_vs_lead.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["trees", "nuclei", "pedestrians"])
    parser.add_argument("--student", default="tinynas-n")
    parser.add_argument("--teachers", nargs="+", default=["damoyolo-t", "damoyolo-s"])
    parser.add_argument("--methods", nargs="+", default=["cwd", "mgd", "mimic"])
    parser.add_argument("--chain", nargs="*", default=[], metavar="LARGE MIDDLE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--worth-margin", type=float, default=0.2, help="distill.worth_margin (0: the weight "
                                                                        "ignores the teacher's worth)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=Path("runs/real-data/data"))
    parser.add_argument("--wheels", type=Path, default=Path("runs/real-data/wheels"))
    parser.add_argument("--out", type=Path, default=Path("runs/distill-real"))
    parser.add_argument("--phase", choices=("all", "train", "report"), default="all")
    args = parser.parse_args()
    if args.chain and len(args.chain) != 2:
        parser.error("--chain takes two models: LARGE MIDDLE")
    datasets = {name: build(name, args.data, args.wheels) for name in args.datasets}
    if args.phase in ("all", "train"):
        for name, dataset in datasets.items():
            train_dataset(dataset, args.out / name, args)
    tables = [report(name, dataset, args) for name, dataset in datasets.items()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distill_real.json").write_text(json.dumps(tables, indent=2) + "\n")
    plot(tables, args.out)
    print(f"\nwrote {args.out / 'distill_real.json'} and {args.out / 'gain_vs_lead.png'}")


if __name__ == "__main__":
    main()
