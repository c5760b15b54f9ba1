"""Conformance checks: what a new implementation of each protocol must do to plug in.

Five roles are swappable behind a protocol: a latency model (``predict_ms``), a judge
(``evaluate`` / ``evaluate_values``), a search strategy (``start`` / ``ask`` / ``tell`` with a
resumable state), an extra training loss (``extra_loss.ExtraLoss``) and a runtime
(``latency.runtimes.Runtime``). Each ``check_*`` runs an implementation through what the
engine will ask of it and raises ``ConformanceError`` (an ``AssertionError``) saying which
promise it broke; the shipped implementations pass them (``tests/test_conformance.py``), and a
new one should be tested the same way::

    from tinynas.conformance import check_latency_model
    check_latency_model(MyChipModel(), archs, resolution=320)
"""

from __future__ import annotations

import math
import pickle
from typing import Callable, Sequence

import torch
from torch import nn

from .arch import Arch
from .ops import REGULAR, ConvOp
from .search.judge import Evaluation, candidate_hash

# Columns the trainer writes itself: an extra loss named like one would overwrite it.
TRAINER_COLUMNS = ("epoch", "lr", "loss", "AP", "AP50", "AP75", "APs", "APm", "APl", "P", "R", "F1")
RUNTIME_RECORD = ("runtime", "runtime_version", "provider", "precision", "op_timing")


class ConformanceError(AssertionError):
    """An implementation broke a promise of its protocol."""


def _require(ok: bool, role: str, promise: str) -> None:
    if not ok:
        raise ConformanceError(f"{role}: {promise}")


def _positive_ms(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _copied(obj, role: str):
    """``obj`` through pickle, as a search worker receives it."""
    try:
        return pickle.loads(pickle.dumps(obj))
    except Exception as err:  # any pickling failure is the same broken promise
        raise ConformanceError(f"{role}: must pickle (search workers get a copy): {err}") from None


# ---------------------------------------------------------------------------- latency model
def check_latency_model(model, archs: Sequence[Arch], resolution: int) -> None:
    """``predict_ms(arch, resolution)``: finite positive milliseconds, the same answer every
    time, and the same from a pickled copy (search workers price with one)."""
    role = f"latency model {type(model).__name__}"
    first = [model.predict_ms(arch, resolution) for arch in archs]
    for arch, ms in zip(archs, first):
        _require(_positive_ms(ms), role, f"predict_ms gave {ms!r} for a {len(arch.blocks)}-block arch; "
                 "expected finite positive milliseconds")
    _require([model.predict_ms(arch, resolution) for arch in archs] == first, role,
             "predict_ms changed its answer for the same architecture")
    copy = _copied(model, role)
    _require([copy.predict_ms(arch, resolution) for arch in archs] == first, role,
             "a pickled copy (what a search worker holds) predicts other milliseconds")


# ---------------------------------------------------------------------------- judge
def check_judge(judge, archs: Sequence[Arch]) -> None:
    """``evaluate``: an ``Evaluation`` whose costs ``evaluate_values`` repeats, one within-flag
    per rung, a score exactly when some rung holds the candidate; the same from a pickled copy."""
    role = f"judge {type(judge).__name__}"
    copy = _copied(judge, role)
    for arch in archs:
        result = judge.evaluate(arch)
        _require(isinstance(result, Evaluation), role, f"evaluate returned {type(result).__name__}, "
                 "not an Evaluation")
        _require(all(isinstance(v, int) and v >= 0 for v in (result.macs, result.params, result.layers)), role,
                 f"macs, params and layers must be counts, got {result.macs!r}, {result.params!r}, {result.layers!r}")
        _require(result.latency_ms is None or _positive_ms(result.latency_ms), role,
                 f"latency_ms must be None or finite positive, got {result.latency_ms!r}")
        _require(isinstance(result.within, tuple) and len(result.within) >= 1
                 and all(isinstance(w, bool) for w in result.within), role, "within must be one bool per rung")
        _require((result.score is not None) == any(result.within), role,
                 "a candidate is scored exactly when it fits some rung")
        values = judge.evaluate_values(arch)
        _require(all(values.get(k) == getattr(result, k) for k in ("macs", "params", "layers")), role,
                 "evaluate_values disagrees with evaluate on macs, params or layers")
        _require(judge.evaluate(arch) == result and copy.evaluate(arch) == result, role,
                 "evaluate changed its answer (again, or in a pickled copy)")


# ---------------------------------------------------------------------------- strategy
def _hashes(candidates) -> list[str]:
    return [candidate_hash(c.arch) for c in candidates]


def _drive(strategy, judge, rounds: int, count: int) -> list[list[str]]:
    """Start ``strategy``, then ask and tell ``rounds`` times; the hashes asked each round."""
    seeds, results = strategy.start(judge)
    strategy.tell(seeds, results)
    asked = []
    for _ in range(rounds):
        children = strategy.ask(count)
        asked.append(_hashes(children))
        strategy.tell(children, [judge.evaluate(c.arch) for c in children])
    return asked


def check_strategy(make: Callable[[], object], judge, rounds: int = 3, count: int = 8) -> None:
    """``make()`` builds a fresh strategy with fixed settings and seed. ``ask(n)`` gives at most
    ``n`` children never asked before; two fresh strategies ask the same; one restored from
    ``state_dict()`` asks what the original asks next; ``best`` names who leads each rung."""
    role = f"strategy {type(make()).__name__}"
    strategy = make()
    asked = _drive(strategy, judge, rounds, count)
    flat = [h for batch in asked for h in batch]
    _require(all(0 < len(batch) <= count for batch in asked), role, f"ask({count}) must give 1..{count} children")
    _require(len(flat) == len(set(flat)), role, "ask gave a child it had given before")
    _require(_drive(make(), judge, rounds, count) == asked, role, "two strategies with one seed asked differently")
    restored = make()
    try:
        restored.load_state_dict(_copied(strategy.state_dict(), role))
        again = _hashes(restored.ask(count))
    except ConformanceError:
        raise
    except Exception as err:  # whatever a half-restored strategy trips over
        raise ConformanceError(f"{role}: a strategy restored from state_dict() cannot ask: {err!r}") from None
    _require(again == _hashes(strategy.ask(count)), role,
             "a strategy restored from state_dict() asks other children than the original")
    best = strategy.best
    _require(isinstance(best, list) and len(best) >= 1 and all(m is not None for m in best), role,
             "best (one member per rung) is empty after candidates were told")


# ---------------------------------------------------------------------------- extra loss
def _step(student: nn.Module, images: torch.Tensor, iteration: int = 0):
    from .train.extra_loss import StepContext

    feats = student.features(images)
    cls_logits, reg_logits = student.head(feats)
    return StepContext(iteration, 100, 90, images, tuple(feats), cls_logits, reg_logits)


def _stand_in_detection_loss(step) -> torch.Tensor:
    """A loss on every tensor a term may share with the detection loss (neck and head)."""
    return sum(f.float().square().mean() for f in step.neck_features) + step.cls_logits.float().square().mean() \
        + step.reg_logits.float().square().mean()


def check_extra_loss(make: Callable[[], object], make_student: Callable[[], nn.Module],
                     images: torch.Tensor) -> None:
    """``make()`` builds the term, ``make_student()`` a detector (the same weights each call).
    The term names a column of its own, attaches, gives a finite scalar (or None) whose
    gradient reaches the student, a finite non-negative weight, and a state that, loaded into a
    fresh term, gives the same loss."""
    term, student = make(), make_student()
    role = f"extra loss {type(term).__name__}"
    name = getattr(term, "name", None)
    _require(isinstance(name, str) and name and name not in TRAINER_COLUMNS, role,
             f"name must be a metrics column of its own, got {name!r}")
    modules = term.attach(student, torch.device("cpu"), False)
    _require(modules is None or isinstance(modules, nn.Module), role, "attach must return an nn.Module or None")
    step = _step(student, images)
    loss = term.loss(step)
    if loss is None:
        return
    _require(isinstance(loss, torch.Tensor) and loss.dim() == 0 and bool(torch.isfinite(loss)), role,
             "loss must be a finite scalar tensor (or None)")
    grads = torch.autograd.grad(loss, [p for p in student.parameters() if p.requires_grad], retain_graph=True,
                                allow_unused=True)
    _require(any(g is not None and bool(g.abs().sum() > 0) for g in grads), role,
             "the loss's gradient does not reach the student")
    weight = term.weight(step, loss, _stand_in_detection_loss(step), 1.0)
    _require(isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0, role,
             f"weight must be a finite number >= 0, got {weight!r}")
    logged = getattr(term, "logged", dict)()
    _require(isinstance(logged, dict) and all(isinstance(k, str) and k not in TRAINER_COLUMNS + (name,)
                                              and isinstance(v, (int, float)) for k, v in logged.items()), role,
             f"logged() must map columns of its own to numbers, got {logged!r}")
    if modules is not None:  # as an optimiser step would, move the term's own weights off their init
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in modules.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    torch.manual_seed(0)  # a term may draw (MGD's masks): both losses get the same draws
    trained = term.loss(_step(student, images))
    state = term.state_dict()
    _require(isinstance(state, dict), role, "state_dict must be a dict")
    fresh, twin = make(), make_student()
    fresh.attach(twin, torch.device("cpu"), False)
    fresh.load_state_dict(_copied(state, role))
    torch.manual_seed(0)
    again = fresh.loss(_step(twin, images))
    _require(again is not None and torch.allclose(again.detach(), trained.detach(), rtol=1e-5, atol=1e-6), role,
             "a fresh term loaded with state_dict() gives another loss")


# ---------------------------------------------------------------------------- runtime
def check_runtime(runtime) -> None:
    """A runtime records what it is, compiles a conv graph into something that runs it, and,
    when it times ops in a chain, reports the op's own positive milliseconds and kernels."""
    from .latency.onnx_graphs import op_chain_graph, op_graph

    role = f"runtime {getattr(runtime, 'name', type(runtime).__name__)}"
    record = runtime.record()
    _require(all(key in record for key in RUNTIME_RECORD), role, f"record() must hold {', '.join(RUNTIME_RECORD)}")
    _require(runtime.op_timing in ("alone", "in-chain"), role, f"op_timing {runtime.op_timing!r}")
    op = ConvOp(REGULAR, 8, 16, 3, 1, 16, 16)
    run = runtime.compile(*op_graph(op, 1))
    _require(callable(run), role, "compile must return a callable")
    run()
    run()
    if runtime.op_timing == "in-chain":
        model, inputs = op_chain_graph(op, 1)
        _require(_positive_ms(runtime.profile(model, inputs)()), role, "profile must give positive milliseconds")
        kernels = runtime.kernels(model, inputs)
        _require(len(kernels) >= 1 and all(isinstance(k, str) for k in kernels), role,
                 "kernels must name what ran")
