"""Objectives and constraints of a regimen optimisation, written in the sweep's metric
language (:mod:`il2pkpd.design.metrics`) over probabilities and expectations across
population draws and virtual subjects::

    maximise P(cmax(treg_fold) >= 1.75)              an objective: maximise | minimise QUANTITY
    P(cmax(nk_fold) >= 1.5 & at(tbr, 60) < 2) <= 0.1  a constraint: QUANTITY <= | >= NUMBER
    E(cmax(conc)) <= 40
    total_dose <= 20

Quantities:

* ``P(TARGET)``: the fraction of (draw, virtual subject) rows where ``TARGET`` (a sweep target:
  clauses ``METRIC OP NUMBER`` joined by ``&``) holds;
* ``E(METRIC)``: the mean of a metric over the rows;
* ``total_dose``: the regimen's total dose, in the unit its template writes (every block in
  one unit).

A probability is a step function of the regimen. For gradients, each indicator
``1{x >= c}`` is replaced by the logistic ``sigma((x - c) / w)`` with width
``w = temperature * |c|`` (``temperature`` when ``c = 0``); the optimiser reports the exact
(unsmoothed) value at its optimum beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..errors import OptionError
from .metrics import Metric, Target, parse_metric, parse_target

__all__ = ["Quantity", "Objective", "Constraint", "parse_objective", "parse_constraint", "SENSES"]

#: objective prefixes -> +1 (maximise) or -1 (minimise)
SENSES = {"maximise": 1.0, "maximize": 1.0, "max": 1.0, "minimise": -1.0, "minimize": -1.0, "min": -1.0}
_QUANTITY = re.compile(r"^\s*(P|E)\s*\((.*)\)\s*$")
_CONSTRAINT = re.compile(r"^\s*(.+?)\s*(<=|>=|<|>|==|=)\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Quantity:
    """``P(target)``, ``E(metric)`` or ``total_dose``."""

    kind: str
    text: str
    target: Target | None = None
    metric: Metric | None = None

    def metrics(self) -> list[Metric]:
        """The metrics the quantity reads."""
        if self.kind == "P":
            return [m for m, _, _ in self.target.clauses]
        return [self.metric] if self.kind == "E" else []

    def rows(self, values: dict, temperature: float | None):
        """Per-row values (R,) from metric columns ``values`` (name -> (R,)): the indicator of
        the target (its logistic with ``temperature``) or the metric itself (JAX)."""
        if self.kind == "E":
            return values[self.metric.name]
        ok = None
        for metric, op, c in self.target.clauses:
            x = values[metric.name]
            sign = 1.0 if op in (">=", ">") else -1.0
            if temperature is None:
                r = {">=": x >= c, "<=": x <= c, ">": x > c, "<": x < c}[op].astype(x.dtype)
            else:
                width = temperature * (abs(c) if c != 0 else 1.0)
                r = jax.nn.sigmoid(sign * (x - c) / width)
            ok = r if ok is None else ok * r
        return ok


@dataclass(frozen=True)
class Objective:
    """``sense`` +1 (maximise) or -1 (minimise) ``quantity``."""

    sense: float
    quantity: Quantity
    text: str


@dataclass(frozen=True)
class Constraint:
    """``quantity op bound`` with ``op`` ``<=`` or ``>=``."""

    quantity: Quantity
    op: str
    bound: float
    text: str

    def slack(self, value):
        """>= 0 where the constraint holds (the form SciPy's SLSQP takes)."""
        return self.bound - value if self.op == "<=" else value - self.bound


def parse_quantity(text: str, model, where: str) -> Quantity:
    text = str(text).strip()
    if text == "total_dose":
        return Quantity("total_dose", text)
    m = _QUANTITY.match(text)
    if not m:
        raise OptionError(f"{where} {text!r}: expected P(TARGET), E(METRIC) or total_dose, e.g. 'P(cmax(treg_fold) >= 1.75)' or 'E(cmax(conc))'")
    kind, inner = m.group(1), m.group(2)
    if kind == "P":
        return Quantity("P", f"P({inner.strip()})", target=parse_target(inner, model))
    metric = parse_metric(inner, model)
    if metric.kind == "hr":
        raise OptionError(f"{where} {text!r}: hr(...) is a ratio of two arms, not a per-subject metric; use risk(...) instead")
    return Quantity("E", f"E({metric.name})", metric=metric)


def parse_objective(text: str, model) -> Objective:
    """``"maximise P(cmax(treg_fold) >= 1.75)"`` -> :class:`Objective` (the sense is required)."""
    if not isinstance(text, str) or not text.strip():
        raise OptionError(f"`objective` must be text such as 'maximise P(cmax(treg_fold) >= 1.75)', got {text!r}")
    head, _, rest = text.strip().partition(" ")
    if head.lower() not in SENSES:
        raise OptionError(f"`objective` {text!r} must start with maximise or minimise (or max/min), e.g. 'maximise P(cmax(treg_fold) >= 1.75)'")
    return Objective(SENSES[head.lower()], parse_quantity(rest, model, "`objective`"), text.strip())


def parse_constraint(text: str, model) -> Constraint:
    """``"P(cmax(nk_fold) >= 1.5) <= 0.1"`` -> :class:`Constraint`."""
    m = _CONSTRAINT.match(str(text))
    if not m:
        raise OptionError(f"constraint {text!r} must look like QUANTITY <= NUMBER or QUANTITY >= NUMBER, e.g. 'P(cmax(nk_fold) >= 1.5) <= 0.1'")
    op = m.group(2)
    if op not in ("<=", ">="):
        raise OptionError(f"constraint {text!r}: use <= or >= (a continuous optimum lies on the boundary, where < and > cannot hold); got {op!r}")
    return Constraint(parse_quantity(m.group(1), model, "constraint"), op, float(m.group(3)), str(text).strip())
