"""Stage 4: the report, its figures, and the deployed model.

Every number of ``report.md`` is read from the run folders the earlier stages left: AP and AP50
from each training's ``metrics.csv`` (the best evaluated epoch, whose weights ``best.pt``
holds), measured latency from ``measure/<model>.json``, the prediction from the latency table.
The chosen model is the most accurate one whose *measured* latency meets the budget, a
``--baselines`` model trained without its teacher included; it is copied (or, a baseline,
exported) to ``deploy/model.onnx`` with its recipe and class names. When no model meets the
budget the report says so and names the fastest.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Callable


from ..atomic import atomic_write_bytes, atomic_write_text, atomic_write_yaml
from ..checkpoint import load_checkpoint, load_detector
from ..deploy.onnx_export import export_onnx
from ..distill.chain import BASELINE_WORTH
from ..detect.costs import recipe_costs
from ..train.diagnostic_plots import DIAGNOSTIC_FILES
from ..train.run import TrainRun
from .spec import DesignSpec

REPORT_NAME = "report.md"
FIGURES = {"ap_latency": "ap_vs_latency.png", "predicted": "predicted_vs_measured.png",
           "curves": "training_curves.png"}


def model_rows(spec: DesignSpec, record: dict, num_classes: int) -> list[dict]:
    from .search_stage import latency_model

    predictor = latency_model(spec, num_classes)
    measured = {m["name"]: m for m in record["measure"]["models"]}
    rows = []
    for model in record["train"]["models"]:
        recipe = load_checkpoint(TrainRun(model["run"]).best_checkpoint()).recipe
        total = recipe_costs(recipe, spec.size, fused=True)[-1]
        distilled = TrainRun(model["run"]).best_metrics()
        plain = (TrainRun(model["plain_run"]).best_metrics() if model["plain_run"]
                 else {"AP": math.nan, "AP50": math.nan})
        predicted = float(predictor.predict_detector_ms(recipe.backbone.arch, spec.size))
        timed = measured[model["name"]]["measured_ms"]
        rows.append({
            "model": model["name"], "teacher": model["teacher"], "budget_ms": model["limit_ms"],
            "params_M": total.params / 1e6, "GFLOPs": total.flops / 1e9,
            "predicted_ms": predicted, "measured_ms": timed, "ratio": timed / predicted,
            "AP": distilled["AP"], "AP50": distilled["AP50"],
            "AP_plain": plain["AP"], "AP50_plain": plain["AP50"],
            "onnx": measured[model["name"]]["onnx"], "run": model["run"], "plain_run": model["plain_run"],
            "init": model.get("init", ""), "worth": model.get("worth", math.nan),
        })
    return rows


def choose(rows: list[dict], budget_ms: float) -> dict | None:
    """The best AP among the models measured within the budget (ties: the faster; then the
    distilled one). A model trained without its teacher (``--baselines``) is a candidate too:
    it has its distilled twin's architecture, so its latency."""
    known = lambda value: value is not None and not math.isnan(value)  # noqa: E731 (stages.json keeps NaN as null)
    candidates = [r for r in rows if known(r["AP"])]
    candidates += [{**r, "model": f"{r['model']}-plain", "teacher": "", "AP": r["AP_plain"], "AP50": r["AP50_plain"],
                    "run": r["plain_run"], "onnx": ""} for r in rows if known(r.get("AP_plain"))]
    fitting = [r for r in candidates if r["measured_ms"] <= budget_ms]
    if not fitting:
        return None
    return max(fitting, key=lambda r: (r["AP"], -r["measured_ms"], bool(r["teacher"])))


# What a training writes about its best weights (train/diagnostic_plots.py), as the report names them.
DIAGNOSTIC_TITLES = dict(zip(DIAGNOSTIC_FILES, ("PR curve", "F1 curve", "confusion matrix", "val images")))
# A table whose predictions miss the measured ms by more than this is said to be off in the report.
OFF_BY = 0.15
COLUMNS = (("model", "model"), ("teacher", "teacher"), ("params_M", "params (M)"), ("GFLOPs", "GFLOPs"),
           ("predicted_ms", "predicted ms"), ("measured_ms", "measured ms"), ("ratio", "measured / predicted"),
           ("AP", "AP"), ("AP50", "AP50"),
           ("AP_plain", "AP without distillation"), ("AP50_plain", "AP50 without distillation"))


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value) or "–"


def _prediction_warning(spec: DesignSpec, rows: list[dict]) -> list[str]:
    """A warning when the table missed a model's measured latency by more than ``OFF_BY``."""
    off = [r for r in rows if abs(r["ratio"] - 1) > OFF_BY]
    if not off:
        return []
    worst = ", ".join(f"`{r['model']}` x{r['ratio']:.2f}" for r in off)
    return [f"**Warning: the latency table missed the measured latency by more than {OFF_BY:.0%}** ({worst}): "
            f"the search priced candidates on a wrong scale. Fit the table to this machine "
            f"(`tinynas latency calibrate --latency-db {spec.latency_db}`) or build one here, then design "
            "again.", ""]


def markdown(spec: DesignSpec, rows: list[dict], chosen: dict | None, figures: dict, merged: list[dict] = (),
             out: Path | None = None) -> str:
    budget = spec.latency_budget().limit
    lines = [f"# Design: {spec.budget} in {spec.runtime}", "",
             f"Data `{spec.data}`, space `{spec.space}`, model `{spec.model}` (its wrap, neck and head), "
             f"{spec.size}x{spec.size} input, latency table `{spec.latency_db}`; {spec.candidates} candidates, "
             f"{spec.epochs} epochs, seed {spec.seed}. Latency is milliseconds per image of the whole "
             "detector, fused; measured = the exported ONNX file timed end to end on this machine.", ""]
    if chosen is not None:
        lines += [f"**Deployed: `{chosen['model']}`** — AP {_cell(chosen['AP'])}, measured "
                  f"{chosen['measured_ms']:.2f} ms within the {budget:g} ms budget: `deploy/model.onnx`.", ""]
    else:
        fastest = min(rows, key=lambda r: r["measured_ms"])
        lines += [f"**No model meets the {budget:g} ms budget when measured.** The fastest, "
                  f"`{fastest['model']}`, takes {fastest['measured_ms']:.2f} ms "
                  f"(predicted {fastest['predicted_ms']:.2f} ms); nothing was deployed. Build a table on "
                  "this device, or relax the budget.", ""]
    lines += ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[key]) for key, _ in COLUMNS) + " |" for r in rows]
    lines.append("")
    lines += _prediction_warning(spec, rows)
    for m in merged:
        lines += [f"Rung `{m['rung']}` ({m['limit_ms']:.4g} ms) found `{m['into']}`'s architecture: the space "
                  "reaches no further, so it was trained once.", ""]
    lines += _given_weights(spec, rows)
    lines += _baselines(spec, rows)
    for key, title in (("ap_latency", "AP against measured latency"),
                       ("predicted", "Predicted against measured latency"), ("curves", "Training curves")):
        if key in figures:
            lines += [f"![{title}]({figures[key]})", ""]
    lines += _diagnostics(out, rows)
    return "\n".join(lines)


def _given_weights(spec: DesignSpec, rows: list[dict]) -> list[str]:
    """Which models started from ``--init`` weights, and which from scratch."""
    if not spec.init:
        return []
    started = [f"`{r['model']}` from `{r['init']}`" for r in rows if r.get("init")]
    scratch = [f"`{r['model']}`" for r in rows if not r.get("init")]
    if not started:
        return ["Given weights (`--init`): none holds a searched model's architecture; every model started from "
                "scratch.", ""]
    return ["Given weights (`--init`): " + "; ".join(started)
            + (f"; from scratch (no checkpoint of its architecture): {', '.join(scratch)}" if scratch else "")
            + ".", ""]


def _baselines(spec: DesignSpec, rows: list[dict]) -> list[str]:
    """With ``--baselines auto``: what each distilled model's teacher was worth, and so whether it
    was also trained without it."""
    if spec.baselines != "auto" or not any(r["teacher"] for r in rows):
        return []
    told = []
    for r in (r for r in rows if r["teacher"]):
        worth = r.get("worth")
        worth_text = "not measured" if worth is None or worth != worth else f"{worth:.2f}"
        told.append(f"`{r['model']}` {worth_text} ("
                    + ("also trained without it" if r["AP_plain"] == r["AP_plain"] else "distilled only") + ")")
    return ["Teachers' worth (`--baselines auto`; the factor on the distillation weight, averaged over the run: "
            f"under {BASELINE_WORTH} the model is also trained without its teacher and the better one can be "
            "deployed): " + "; ".join(told) + ".", ""]


def _diagnostics(out: Path | None, rows: list[dict]) -> list[str]:
    """Links to each model's diagnostics (PR and F1 curves, confusion matrix, val images), as
    its training wrote them, relative to the report."""
    if out is None:
        return []
    lines = []
    for r in rows:
        run = Path(r["run"])
        found = [(title, run / name) for name, title in DIAGNOSTIC_TITLES.items() if (run / name).is_file()]
        if found:
            links = ", ".join(f"[{title}]({_relative(path, out)})" for title, path in found)
            lines.append(f"- `{r['model']}`: {links}")
    return ["## Diagnostics of each model's best weights on the val split", "", *lines, ""] if lines else []


def _relative(path: Path, out: Path) -> str:
    try:
        return path.resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return str(path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    image = io.BytesIO()
    fig.tight_layout()
    fig.savefig(image, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, image.getvalue())


def draw(out: Path, rows: list[dict], budget_ms: float, chosen: dict | None = None) -> dict:
    """The report's figures; none (and the report says nothing of them) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.axvline(budget_ms, color="red", linestyle="--", label=f"budget {budget_ms:g} ms")
    for r in rows:
        ax.scatter(r["measured_ms"], r["AP"], color="C0")
        ax.annotate(r["model"], (r["measured_ms"], r["AP"]), textcoords="offset points", xytext=(4, 4))
        if not math.isnan(r["AP_plain"]):
            ax.scatter(r["measured_ms"], r["AP_plain"], color="C1", marker="x")
    if chosen is not None:
        ax.scatter(chosen["measured_ms"], chosen["AP"], s=180, marker="*", color="gold", edgecolor="black",
                   zorder=3, label=f"deployed: {chosen['model']}")
    ax.set_title("AP against measured latency")
    ax.set_xlabel("measured latency (ms / image)")
    ax.set_ylabel("AP (x: without distillation)")
    ax.legend()
    _save(fig, out / FIGURES["ap_latency"])
    _draw_predicted(out, rows)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        points = [(int(float(m["epoch"])), float(m["AP"])) for m in TrainRun(r["run"]).metrics()
                  if m.get("AP") not in (None, "")]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=r["model"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("val AP")
    if ax.lines:
        ax.legend()
    _save(fig, out / FIGURES["curves"])
    return dict(FIGURES)


def _draw_predicted(out: Path, rows: list[dict]) -> None:
    """Predicted against measured ms, each point named with its ratio, the mean error titled."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ms = [r["measured_ms"] for r in rows] + [r["predicted_ms"] for r in rows]
    ax.plot([0, max(ms) * 1.1], [0, max(ms) * 1.1], color="grey", linewidth=0.8)
    ax.scatter([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows])
    for r in rows:
        ax.annotate(f"{r['model']} x{r['ratio']:.2f}", (r["predicted_ms"], r["measured_ms"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    mape = 100 * sum(abs(r["ratio"] - 1) / r["ratio"] for r in rows) / len(rows)
    ax.set_title(f"Predicted against measured (MAPE {mape:.1f}%)")
    ax.set_xlabel("predicted ms")
    ax.set_ylabel("measured ms")
    _save(fig, out / FIGURES["predicted"])


def deploy(out: Path, chosen: dict, classes: list[str], size: int) -> None:
    folder = out / "deploy"
    folder.mkdir(exist_ok=True)
    weights = TrainRun(chosen["run"]).best_checkpoint()
    if chosen["onnx"]:
        atomic_write_bytes(folder / "model.onnx", Path(chosen["onnx"]).read_bytes())
    else:  # a model trained without its teacher: measured through its twin, exported here
        export_onnx(load_detector(weights)[0], folder / "model.onnx", size=size, force=True)
    recipe = load_checkpoint(weights).recipe
    atomic_write_yaml(folder / "recipe.yaml", recipe.to_dict())
    atomic_write_text(folder / "classes.json", json.dumps(classes, indent=2) + "\n")


def run(spec: DesignSpec, out: Path, record: dict, classes: list[str], log: Callable[[str], None]) -> dict:
    rows = model_rows(spec, record, len(classes))
    budget = spec.latency_budget().limit
    chosen = choose(rows, budget)
    figures = draw(out, rows, budget, chosen)
    if chosen is not None:
        deploy(out, chosen, classes, spec.size)
    atomic_write_text(out / REPORT_NAME, markdown(spec, rows, chosen, figures, record["train"].get("merged", []),
                                                  out))
    log(f"report: {out / REPORT_NAME}" + (f"; deployed {chosen['model']}" if chosen else "; nothing deployed"))
    return {"report": REPORT_NAME, "models": rows, "chosen": chosen}
