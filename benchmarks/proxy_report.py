"""The proxy study's tables for one budget and dataset (``proxy_study.py --phase report``)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from pareto import DETECTIONS, rung_model

PROXY_ORDER = ("mae", "entropy", "zen", "synflow", "naswot", "snip", "grad_norm", "params", "gflops",
               "predicted_ms", "measured_ms")


def mean_ap(folders: list[Path], dataset) -> tuple[float, int]:
    """Mean AP over the finished seeds' detections (one evaluator), and how many there were."""
    from tinynas.train.coco_eval import coco_metrics

    aps = [coco_metrics(dataset.val_annotations, json.loads((f / DETECTIONS).read_text()))["AP"]
           for f in folders if (f / DETECTIONS).is_file()]
    return (statistics.mean(aps) if aps else float("nan")), len(aps)


def bootstrap(x: np.ndarray, y: np.ndarray, draws: int, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of Kendall tau and Spearman over resamples of the pairs."""
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(draws):
        pick = rng.integers(0, len(x), len(x))
        if len(set(x[pick])) < 2 or len(set(y[pick])) < 2:
            continue  # a resample of one distinct value has no rank correlation
        taus.append(kendalltau(x[pick], y[pick])[0])
        rhos.append(spearmanr(x[pick], y[pick])[0])
    interval = lambda v: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))  # noqa: E731
    return {"tau": interval(taus), "rho": interval(rhos)}


def measured_ms(plan: dict, entries: list[dict], args) -> dict[str, float]:
    """Each trained entry's detector, untrained, exported and timed side by side (a dense
    network's time does not depend on its weights)."""
    from pareto import export_untrained
    from tinynas.latency.side_by_side import time_side_by_side

    folder = Path(plan["folder"])
    paths = []
    for entry in entries:
        model = rung_model(plan["model"], entry["arch"], folder / "models", entry["name"])
        paths.append(export_untrained(str(model), 1, args.size, folder / "onnx" / f"{entry['name']}.onnx"))
    timing = time_side_by_side(paths, args.size, db=args.db, rounds=args.rounds, runs=args.runs,
                               names=[e["name"] for e in entries])
    return {e["name"]: timing.by_name(e["name"]).median_ms for e in entries}


def report(plan: dict, name: str, dataset, args) -> dict:
    from proxy_study import proxy_value, run_folder, trained_entries

    roles = trained_entries(plan, name, args)
    distinct = list({e["name"]: e for e in roles.values()}.values())
    ap = {e["name"]: mean_ap([run_folder(args, plan, name, e, s) for s in args.seeds], dataset) for e in distinct}
    timed = measured_ms(plan, distinct, args) if args.rounds else {}
    value = lambda e, p: timed.get(e["name"], float("nan")) if p == "measured_ms" else proxy_value(e, p, name)  # noqa: E731
    draws = [e for role, e in roles.items() if role.startswith("random:") and not np.isnan(ap[e["name"]][0])]
    print(f"\n{name}, {plan['model']} at {plan['limit_ms']:.2f} table ms: {len(draws)} random draws trained "
          f"({args.epochs} epochs, seeds {args.seeds})")
    y = np.array([ap[e["name"]][0] for e in draws])
    rows = []
    print("| proxy | Kendall tau [95% CI] | Spearman [95% CI] | pick's AP | draws' median AP | draws' best AP |")
    print("|---|---|---|---|---|---|")
    for proxy in PROXY_ORDER:
        x = np.array([value(e, proxy) for e in draws], dtype=float)
        if len(draws) < 3 or np.isnan(x).any():
            continue
        tau, rho = kendalltau(x, y)[0], spearmanr(x, y)[0]
        ci = bootstrap(x, y, args.bootstrap)
        pick = roles.get(f"pick:{proxy}")
        pick_ap = ap[pick["name"]][0] if pick is not None else float("nan")
        rows.append({"proxy": proxy, "tau": tau, "tau_ci": ci["tau"], "rho": rho, "rho_ci": ci["rho"],
                     "pick": pick["name"] if pick else "", "pick_AP": pick_ap})
        print(f"| {proxy} | {tau:+.2f} [{ci['tau'][0]:+.2f}, {ci['tau'][1]:+.2f}] | {rho:+.2f} "
              f"[{ci['rho'][0]:+.2f}, {ci['rho'][1]:+.2f}] | {pick_ap:.4f} | {np.median(y):.4f} | {y.max():.4f} |")
    for role in ("search:design", "search:converged"):
        entry = roles[role]
        spread = (f"; the draws' MAE {min(value(e, 'mae') for e in draws):.1f} to "
                  f"{max(value(e, 'mae') for e in draws):.1f}") if draws else ""
        print(f"{role}: {entry['name']} AP {ap[entry['name']][0]:.4f} (MAE {value(entry, 'mae'):.1f}{spread})")
        rows.append({"proxy": role, "pick": entry["name"], "pick_AP": ap[entry["name"]][0]})
    plot(plan, name, draws, ap, value, [r for r in rows if "tau" in r])
    return {"dataset": name, "model": plan["model"], "limit_ms": plan["limit_ms"], "rows": rows,
            "AP": {k: {"mean": v[0], "seeds": v[1]} for k, v in ap.items()}, "measured_ms": timed,
            "draws_median_AP": float(np.median(y)) if len(y) else None}


def plot(plan: dict, name: str, draws: list[dict], ap: dict, value, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = sorted(rows, key=lambda r: -abs(r["tau"]))[:4]
    if not top or not draws:
        return
    fig, axes = plt.subplots(1, len(top), figsize=(4 * len(top), 3.6), squeeze=False)
    for ax, row in zip(axes[0], top):
        ax.scatter([value(e, row["proxy"]) for e in draws], [ap[e["name"]][0] for e in draws], s=18)
        ax.set_xlabel(row["proxy"])
        ax.set_ylabel("val AP (mean over seeds)")
        ax.set_title(f"tau {row['tau']:+.2f}")
    fig.suptitle(f"{name}: {plan['model']} at {plan['limit_ms']:.2f} table ms, random in-budget backbones")
    fig.tight_layout()
    fig.savefig(Path(plan["folder"]) / f"proxies-{name}.png", dpi=110)
    plt.close(fig)
