"""Does the zero-shot score pick better detectors? Proxies against trained AP on real data.

For each budget of ``--budgets`` (``MODEL`` or ``MODEL@MS``: the model recipe whose wrap, neck and
head every candidate gets, and the whole-detector latency limit in the table's ms, by default the
recipe's own predicted latency), in one search space (``--space``, k1kx):

1. **candidates** (``prepare``): the backbones the MAE search picks under the limit, once as
   ``tinynas design``'s search stage does it (whole-detector pricing, a ladder with a spare rung,
   ``--candidates`` 20,000) and once at this budget alone with ``--converged-candidates``
   (100,000: at 20,000 the score still climbs), and a pool of
   ``--pool`` backbones drawn at random among those whose predicted latency lies within
   ``--band`` (5%) under the limit: each a random walk of ``--walk`` accepted mutations from the
   recipe's own backbone, a mutation accepted only while the detector stays under the limit
   (each draw its own seed). The first ``--random`` of the pool are the random draws trained;
2. **proxies** on every candidate (``proxy_scoring.py``): mae, entropy, zen, synflow, params,
   gflops, predicted ms; per dataset naswot, snip and grad_norm on one batch of its training
   set; each proxy's pick is the pool's highest value of it (MAE's too, beside the searches');
3. **training** (``train``): every pick and random draw with each of ``--seeds`` on each dataset
   (a data proxy's pick on its own dataset), ``--epochs`` at the shipped defaults, one thread per
   process, ``--jobs`` at a time, seed by seed; resumable like ``pareto.py``;
4. **report**: per dataset and budget, the mean AP over seeds (one evaluator: pycocotools on val,
   conf 0.001, IoU 0.7, 100 detections, best weights); Kendall tau and Spearman of each proxy with
   AP over the random draws, with 95% bootstrap intervals (``--bootstrap`` resamples of the
   draws); each pick's AP against the median and best of the draws; measured latency (the untrained
   exports timed side by side, as ``pareto.py`` does) as one more proxy; ``proxies.png``: AP
   against the top proxies. Everything goes to ``proxy_study.json``.

    python benchmarks/proxy_study.py [--datasets trees nuclei] [--budgets tinynas-n tinynas-p@16.5] \
        [--seeds 0 1 2] [--epochs 100] [--pool 60] [--random 12] [--phase all|prepare|train|report]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pareto import rung_model, search_ladder, tinynas_train  # noqa: E402
from proxy_scoring import DATA_FREE, WITH_DATA, data_free_proxies, data_proxies, proxy_batch  # noqa: E402
from real_datasets import build  # noqa: E402

from tinynas.archio import load_arch, save_arch  # noqa: E402
from tinynas.detect.model_recipe import load_model_recipe  # noqa: E402
from tinynas.latency.detector_model import DetectorLatencyModel  # noqa: E402
from tinynas.resources import resolve_space_path  # noqa: E402
from tinynas.space import load_space  # noqa: E402

CONVERGED = "mae-search-converged"
PROXIES = ("mae", *[p for p in DATA_FREE if p != "mae"], *WITH_DATA, "predicted_ms")


def budget_arg(text: str) -> tuple[str, float | None]:
    model, _, ms = text.partition("@")
    try:
        return model, float(ms.removesuffix("ms")) if ms else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MODEL or MODEL@MS") from None


def walk_draw(space, start, predict, limit: float, band: float, steps: int, seed: int, max_tries: int = 20000):
    """A random in-budget backbone: from ``start`` (first walked down under ``limit`` when over it,
    a mutation kept only when it lowers the latency), ``steps`` accepted mutations each keeping the
    detector under ``limit``, then on until the prediction is within ``band`` under it."""
    rng, arch, accepted = random.Random(seed), start, 0
    current = predict(arch)
    for _ in range(max_tries):
        child = space.mutate(arch, rng)
        ms = predict(child)
        if ms <= limit or (current > limit and ms < current):
            arch, current = child, ms
            accepted += ms <= limit
            if accepted >= steps and ms >= (1 - band) * limit:
                return arch, ms
    raise RuntimeError(f"no draw within {band:.0%} under {limit:.2f} ms after {max_tries} mutations (seed {seed})")


def prepare_budget(model: str, limit: float | None, datasets: dict, args) -> dict:
    """Search pick, pool, proxies and picks of one budget; kept in ``plan.json`` once made."""
    num_classes = {len(d.classes) for d in datasets.values()}
    if len(num_classes) != 1:
        raise SystemExit("the datasets of one study need the same class count (the detector's latency depends on it)")
    recipe = load_model_recipe(model).with_num_classes(num_classes.pop())
    predictor = DetectorLatencyModel(args.db, recipe)
    predict = lambda arch: predictor.predict_detector_ms(arch, args.size)  # noqa: E731
    limit = limit or predict(recipe.backbone.arch)
    folder = (args.out / f"{Path(model).stem}@{limit:.2f}ms").resolve()
    plan_path = folder / "plan.json"
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else None
    if plan is None:
        folder.mkdir(parents=True, exist_ok=True)
        first = next(iter(datasets.values()))
        rungs = search_ladder(first, args, model, [limit], folder / "search")
        searched = next(r for r in rungs if abs(r["limit_ms"] / limit - 1) < 1e-4)
        space = load_space(resolve_space_path(args.space))
        entries = [{"name": "mae-search", "arch": searched["arch"], "predicted_ms": predict(load_arch(searched["arch"]))}]
        for i in range(args.pool):
            arch, ms = walk_draw(space, recipe.backbone.arch, predict, limit, args.band, args.walk, seed=1000 + i)
            path = folder / "pool" / f"draw{i:03d}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_arch(arch, path)
            entries.append({"name": f"draw{i:03d}", "arch": str(path.resolve()), "predicted_ms": ms})
        plan = {"model": model, "limit_ms": limit, "folder": str(folder), "entries": entries}
        plan_path.write_text(json.dumps(plan, indent=2) + "\n")
    if not any(e["name"] == CONVERGED for e in plan["entries"]):
        plan["entries"].insert(1, converged_search(recipe, limit, folder, predict, args))
        plan_path.write_text(json.dumps(plan, indent=2) + "\n")
    score_pool(plan, recipe, datasets, args)
    plan_path.write_text(json.dumps(plan, indent=2) + "\n")
    return plan


def converged_search(recipe, limit: float, folder: Path, predict, args) -> dict:
    """The MAE search at this one budget with ``--converged-candidates``: design's ladder search
    shares its candidates among its rungs and stops at 20,000, where the score still climbs."""
    from tinynas.plan import searched_size
    from tinynas.search import search

    result = search(args.space, (f"latency={limit:.4f}ms",), latency=args.db, detector=recipe,
                    candidates=args.converged_candidates, seed=args.search_seed,
                    resolution=searched_size(recipe.backbone.arch, args.size, recipe.backbone.focus), progress=False)
    path = folder / "search-converged.yaml"
    save_arch(result.rungs[0].best.arch, path)
    arch = load_arch(path)
    return {"name": CONVERGED, "arch": str(path.resolve()), "predicted_ms": predict(arch)}


def score_pool(plan: dict, recipe, datasets: dict, args) -> None:
    """Every proxy of every entry (kept in the plan as it goes: a killed run scores the rest)."""
    from tinynas.data.coco import CocoDataset
    from tinynas.plan import searched_size

    searched = searched_size(recipe.backbone.arch, args.size, recipe.backbone.focus)
    batches = {}
    for entry in plan["entries"]:
        arch = load_arch(entry["arch"])
        if "proxies" not in entry:
            entry["proxies"] = {**data_free_proxies(recipe, arch, args.size, searched),
                                "predicted_ms": entry["predicted_ms"]}
        for name, dataset in datasets.items():
            key = f"data_proxies_{name}"
            if key in entry:
                continue
            if name not in batches:
                coco = CocoDataset(dataset.train_annotations, dataset.train_images)
                batches[name] = proxy_batch(coco, args.size, args.proxy_batch)
            entry[key] = data_proxies(recipe, arch, *batches[name])
        Path(plan["folder"], "plan.json").write_text(json.dumps(plan, indent=2) + "\n")


def proxy_value(entry: dict, proxy: str, dataset: str) -> float:
    if proxy in WITH_DATA:
        return entry[f"data_proxies_{dataset}"][proxy]
    return entry["proxies"][proxy]


def trained_entries(plan: dict, dataset: str, args) -> dict[str, dict]:
    """role -> entry trained on ``dataset``: the MAE searches' picks (design's ladder search, and
    the converged one), each proxy's pick among the pool, and the random draws (one entry may hold
    several roles)."""
    pool = [e for e in plan["entries"] if e["name"].startswith("draw")]
    by_name = {e["name"]: e for e in plan["entries"]}
    roles = {"search:design": by_name["mae-search"], "search:converged": by_name[CONVERGED]}
    for proxy in PROXIES:
        if proxy != "predicted_ms":
            roles[f"pick:{proxy}"] = max(pool, key=lambda e: proxy_value(e, proxy, dataset))
    roles.update({f"random:{e['name']}": e for e in pool[:args.random]})
    return roles


def run_folder(args, plan: dict, dataset: str, entry: dict, seed: int) -> Path:
    return Path(plan["folder"]) / dataset / f"{entry['name']}-e{args.epochs}-s{seed}"


def train_all(plans: list[dict], datasets: dict, args) -> None:
    jobs = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for seed in args.seeds:
            for plan in plans:
                for name, dataset in datasets.items():
                    seen = set()
                    for entry in trained_entries(plan, name, args).values():
                        if entry["name"] in seen:
                            continue
                        seen.add(entry["name"])
                        folder = run_folder(args, plan, name, entry, seed)
                        model = rung_model(plan["model"], entry["arch"], Path(plan["folder"]) / "models", entry["name"])
                        jobs.append(pool.submit(tinynas_train, dataset, folder, str(model), seed, args))
        failed = [job.exception() for job in jobs if job.exception() is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} trainings failed; the first: {failed[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["trees", "nuclei"])
    parser.add_argument("--budgets", type=budget_arg, nargs="+", default=[("tinynas-n", None), ("tinynas-p", 16.5)],
                        help="MODEL or MODEL@MS (table ms; default tinynas-n at its own latency, and tinynas-p at "
                             "16.5, between the p family's floor and tinynas-p's own 19.8)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--space", default="k1kx")
    parser.add_argument("--db", default="cpu-ort-fp32-tinynas-n")
    parser.add_argument("--candidates", type=int, default=20000, help="the MAE search's candidates")
    parser.add_argument("--search-seed", type=int, default=0)
    parser.add_argument("--converged-candidates", type=int, default=100000,
                        help="candidates of the MAE search at the budget alone")
    parser.add_argument("--pool", type=int, default=60, help="random in-budget backbones scored by every proxy")
    parser.add_argument("--random", type=int, default=12, help="of the pool, how many are trained as random draws")
    parser.add_argument("--band", type=float, default=0.05, help="a draw's predicted latency within this under the limit")
    parser.add_argument("--walk", type=int, default=100, help="accepted mutations of each draw's random walk")
    parser.add_argument("--proxy-batch", type=int, default=8, help="training images the data proxies see")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds of the measured-latency proxy")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--data", type=Path, default=Path("runs/real-data/data"))
    parser.add_argument("--wheels", type=Path, default=Path("runs/real-data/wheels"))
    parser.add_argument("--out", type=Path, default=Path("runs/proxy-study"))
    parser.add_argument("--phase", choices=("all", "prepare", "train", "report"), default="all")
    args = parser.parse_args()
    datasets = {name: build(name, args.data, args.wheels) for name in args.datasets}
    plans = [prepare_budget(model, limit, datasets, args) for model, limit in args.budgets]
    if args.phase in ("all", "train"):
        train_all(plans, datasets, args)
    if args.phase in ("all", "report"):
        from proxy_report import report

        doc = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "tables": [report(plan, name, dataset, args) for plan in plans for name, dataset in datasets.items()]}
        (args.out / "proxy_study.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"\nwrote {args.out / 'proxy_study.json'}")


if __name__ == "__main__":
    main()
