"""The training form of a whole model's RepConv units (``nn/repconv.py``: branches, plain, scaled).

Every unit of a model trains in the same form; a checkpoint records it (``rep_form``) so that
whatever loads the weights rebuilds the units they fit. Fused units have no training form and
are left alone.
"""

from __future__ import annotations

from torch import nn

from .repconv import REP_FORMS, RepConv

DEFAULT_FORM = "branches"


def rep_units(model: nn.Module) -> list[tuple[str, RepConv]]:
    """The unfused RepConv units (RepVGG blocks included), by module name, in model order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, RepConv) and not m.is_fused]


def set_rep_form(model: nn.Module, form: str) -> nn.Module:
    """Rebuild every unfused unit in ``form`` (freshly initialised where the form changes)."""
    if form not in REP_FORMS:
        raise ValueError(f"unknown RepConv form {form!r} (known: {', '.join(REP_FORMS)})")
    for _, unit in rep_units(model):
        unit.set_form(form)
    return model


def rep_form_of(model: nn.Module) -> str:
    """The form the model's unfused units train in; ``branches`` when it has none."""
    forms = {unit.form for _, unit in rep_units(model)}
    if len(forms) > 1:
        raise ValueError(f"the model's RepConv units are in several forms: {', '.join(sorted(forms))}")
    return forms.pop() if forms else DEFAULT_FORM
