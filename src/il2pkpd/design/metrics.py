"""Decision metrics of a simulated trajectory, computed inside the compiled batch.

A metric is written as a small call, ``KIND(OUTPUT[, ARG[, ARG]])``, over a model output or
event, in the model's time unit:

===========================  ==================================================================
``cmax(conc)``               maximum over the horizon (three-point parabolic refinement)
``cmax(conc, a, b)``         maximum over the window from time ``a`` to ``b`` (the same for
                             ``tmax`` and ``min``; e.g. a steady-state interval)
``tmax(conc)``               time of that maximum
``min(out)``                 minimum over the horizon
``auc(conc)``                area under the curve over the horizon (trapezoid on the grid)
``auc(conc, a, b)``          area from time ``a`` to ``b``
``above(conc, x)``           time spent above ``x`` (crossings by linear interpolation)
``at(treg_fold, 5)``         the output at a time
``change(tbr, 60)``          output at a time minus its value at time 0 (before any effect)
``pchange(cd25_fold, 60)``   the same as a percentage of the time-0 value
``risk(mi, 365)``            1 - survival of an event at a time (cumulative incidence)
``hr(mi, 730)``              ratio of the event's cumulative hazard at a time to that of the same
                             virtual subject without treatment (the sweep adds the untreated arm)
===========================  ==================================================================

``max`` is a synonym of ``cmax``. Every trajectory is evaluated on one output grid
(:func:`output_grid`): dense right after each dose (where concentrations peak), daily through
treatment and two weeks beyond (where responses peak), weekly after that, with every time a metric names added exactly. Grid-based maxima and areas are
approximations whose error the grid controls; the tests bound it on closed forms.

The functions here are pure NumPy (parsing, grid, weights) and pure JAX (evaluation).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import OptionError

__all__ = ["Metric", "Target", "parse_metric", "parse_target", "output_grid", "MetricEvaluator", "DEFAULT_DOSE_OFFSETS"]

_KINDS = {"cmax": (0, 2), "max": (0, 2), "tmax": (0, 2), "min": (0, 2), "auc": (0, 2), "above": 1, "at": 1, "change": 1, "pchange": 1, "risk": 1, "hr": 1}
_WINDOWED = ("cmax", "max", "tmax", "min", "auc")  # optional window (a, b)
_CALL = re.compile(r"^\s*([a-z]+)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*((?:,\s*[^,()]+\s*)*)\)\s*$")
# Offsets after each dose added to the grid (fraction of a day): every 10 min to 3 h, then 4, 6,
# 8, 12 and 24 h. s.c. IL-2 peaks 0.4-3 h after the dose in the IVORY model's prior draws, and
# an absorption lag puts a kink inside the first hour, across which no parabola refines a peak:
# the grid itself must sample it. With 1, 2, 3 ... h, cmax(conc) was up to 9% low (38% of prior
# draws off by more than 1%; benchmarks/README.md); a parabola through 10-min samples of a
# one-compartment peak is within 0.2% (tests/integration/test_sweep.py, against the closed form).
DEFAULT_DOSE_OFFSETS = tuple(m / 1440.0 for m in range(10, 181, 10)) + tuple(h / 24.0 for h in (4, 6, 8, 12, 24))


@dataclass(frozen=True)
class Metric:
    """One metric: ``kind`` over model output ``output`` with numeric ``args``."""

    kind: str
    output: str
    args: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        """Column name, e.g. ``cmax(conc)`` or ``at(treg_fold, 5)`` (the text, normalised)."""
        args = "".join(f", {a:g}" for a in self.args)
        kind = "cmax" if self.kind == "max" else self.kind
        return f"{kind}({self.output}{args})"

    def times(self) -> tuple[float, ...]:
        """Times this metric needs on the grid."""
        if self.kind in ("at", "change", "pchange", "risk", "hr"):
            return (0.0, self.args[0])
        if self.kind in _WINDOWED and self.args:
            return self.args
        return ()


def parse_metric(text: str, model) -> Metric:
    """Parse ``KIND(OUTPUT[, ARG...])`` and check it against ``model``'s outputs and events."""
    m = _CALL.match(str(text))
    if not m:
        raise OptionError(f"metric {text!r} must look like KIND(OUTPUT[, NUMBER...]), e.g. 'cmax(conc)' or 'at(treg_fold, 5)'")
    kind, output, rest = m.group(1), m.group(2), m.group(3)
    if kind not in _KINDS:
        raise OptionError(f"metric {text!r}: unknown kind {kind!r}; expected one of {sorted(_KINDS)}")
    args = []
    for a in filter(None, (x.strip() for x in rest.split(","))):
        try:
            args.append(float(a))
        except ValueError:
            raise OptionError(f"metric {text!r}: argument {a!r} must be a number") from None
    want = _KINDS[kind]
    if (len(args) not in want) if isinstance(want, tuple) else len(args) != want:
        raise OptionError(f"metric {text!r}: {kind} takes {want if isinstance(want, int) else ' or '.join(map(str, want))} number(s) after the output, got {len(args)}")
    if any(not math.isfinite(a) for a in args):
        raise OptionError(f"metric {text!r}: arguments must be finite numbers")
    if kind in ("risk", "hr"):
        events = [e.name for e in model.events]
        if output not in events:
            raise OptionError(f"metric {text!r}: {output!r} is not an event of model {model.name!r} (has {events})")
    else:
        outputs = list(model.symbolic.output_names)
        if output not in outputs:
            raise OptionError(f"metric {text!r}: {output!r} is not an output of model {model.name!r} (has {outputs})")
    if kind in ("at", "change", "pchange", "risk", "hr") and args[0] < 0:
        raise OptionError(f"metric {text!r}: the time must be >= 0, got {args[0]:g}")
    if kind in _WINDOWED and args and not 0 <= args[0] < args[1]:
        raise OptionError(f"metric {text!r}: {kind}(output, a, b) needs 0 <= a < b, got a={args[0]:g}, b={args[1]:g}")
    return Metric(kind, output, tuple(args))


_TARGET = re.compile(r"^\s*(.+?)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Target:
    """A decision target: every clause ``metric OP value`` must hold (``&``)."""

    text: str
    clauses: tuple[tuple[Metric, str, float], ...]

    def holds(self, values: dict) -> np.ndarray:
        """Boolean array: the target holds for each row of ``values`` (metric name -> array)."""
        ok = None
        for metric, op, value in self.clauses:
            x = np.asarray(values[metric.name], dtype=float)
            r = {">=": x >= value, "<=": x <= value, ">": x > value, "<": x < value}[op]
            ok = r if ok is None else ok & r
        return ok


def parse_target(text: str, model) -> Target:
    """Parse ``'cmax(treg_fold) >= 1.75 & cmax(nk_fold) < 1.5'``."""
    clauses = []
    for part in str(text).split("&"):
        m = _TARGET.match(part)
        if not m:
            raise OptionError(f"target {text!r}: clause {part.strip()!r} must look like METRIC OP NUMBER with OP one of >=, <=, >, <")
        try:
            value = float(m.group(3))
        except ValueError:
            raise OptionError(f"target {text!r}: {m.group(3)!r} is not a number") from None
        clauses.append((parse_metric(m.group(1), model), m.group(2), value))
    return Target(str(text).strip(), tuple(clauses))


def output_grid(dose_times, horizon: float, *, step: float = 7.0, dense_step: float = 1.0, dense_after: float = 14.0,
                dose_offsets=DEFAULT_DOSE_OFFSETS, extra=(), time_scale: float = 1.0) -> np.ndarray:
    """The output times of one regimen, sorted and unique, within [0, horizon]:

    * every ``dense_step`` from 0 to the last dose + ``dense_after`` days (responses peak);
    * every ``step`` after that (slow tails: inflammation, event risk);
    * each dose time plus ``dose_offsets`` (concentration peaks);
    * ``extra`` (times the metrics name) and ``horizon``.

    ``dense_step`` and ``step`` are in model time units; ``dose_offsets`` and ``dense_after``
    in days, converted by ``time_scale`` (model time units per day).
    """
    if not (horizon > 0 and math.isfinite(horizon)):
        raise OptionError(f"`horizon` must be a positive finite time, got {horizon!r}")
    if not (step > 0 and dense_step > 0):
        raise OptionError(f"grid steps must be > 0, got step={step!r}, dense_step={dense_step!r}")
    dense_end = min(horizon, (max(dose_times) if len(dose_times) else 0.0) + dense_after * time_scale)
    parts = [np.arange(0.0, dense_end, dense_step), np.arange(dense_end, horizon, step), [0.0, horizon], list(extra)]
    for t in dose_times:
        parts.append(float(t) + np.asarray(dose_offsets, dtype=float) * time_scale)
        parts.append([float(t)])
    grid = np.unique(np.round(np.concatenate([np.asarray(p, dtype=float).ravel() for p in parts]), 12))
    return grid[(grid >= 0.0) & (grid <= horizon)]


class MetricEvaluator:
    """Evaluate metrics on one subject's trajectory (a pure JAX function of times and outputs).

    Parameters
    ----------
    metrics
        The metrics (``hr`` metrics give the cumulative hazard here; the sweep divides by the
        untreated subject's).
    model
        The model (output names, events).

    Notes
    -----
    Output grids of different regimens are padded to one length by repeating the last time
    (so that one compiled program serves every regimen); repeated times are recognised and
    carry the value of their first occurrence, contributing nothing to areas or times above.
    """

    def __init__(self, metrics, model):
        self.metrics = tuple(metrics)
        names = list(model.symbolic.output_names)
        self._cols = [names.index(f"surv_{m.output}" if m.kind in ("risk", "hr") else m.output) for m in self.metrics]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def __call__(self, t, outs, breaks=None):
        """Times (T,), outputs (T, n_outputs) and breaks (T,) of one subject -> (M,) metric
        values. ``breaks[k]``: the trajectory jumps or kinks in (t[k-1], t[k]] (a dose), so
        no peak is interpolated across it (see :class:`~il2pkpd.solve.BatchSolver`'s ``reduce``)."""
        if breaks is None:
            breaks = jnp.zeros(t.shape, dtype=bool)
        valid = jnp.concatenate([jnp.array([True]), jnp.diff(t) > 0])
        # a repeated time carries the value of its first occurrence (padding repeats the
        # final time; a moving grid may repeat one inside): it adds nothing to areas or
        # times above, and it is never a sample of another time
        first = jax.lax.cummax(jnp.where(valid, jnp.arange(t.shape[0]), 0))
        outs = outs[first]

        def at(x):
            return jnp.argmin(jnp.abs(t - x))

        values = []
        for m, col in zip(self.metrics, self._cols, strict=True):
            y = outs[:, col]
            if m.kind in ("cmax", "max", "tmax", "min"):
                z = -y if m.kind == "min" else y
                inside = None
                if m.args:  # a window: samples outside it cannot be the extremum
                    a, b = m.args
                    inside = (t >= a - 1e-9) & (t <= b + 1e-9)
                peak, when = _extremum(t, z, breaks, inside)
                values.append(when if m.kind == "tmax" else (-peak if m.kind == "min" else peak))
            elif m.kind == "auc":
                a, b = m.args if m.args else (-jnp.inf, jnp.inf)
                inside = (t >= a - 1e-9) & (t <= b + 1e-9)
                seg = inside[:-1] & inside[1:]
                values.append(jnp.sum(jnp.where(seg, 0.5 * jnp.diff(t) * (y[:-1] + y[1:]), 0.0)))
            elif m.kind == "above":
                values.append(_time_above(t, y, m.args[0]))
            elif m.kind == "at":
                values.append(y[at(m.args[0])])
            elif m.kind == "change":
                values.append(y[at(m.args[0])] - y[at(0.0)])
            elif m.kind == "pchange":
                values.append(100.0 * (y[at(m.args[0])] / y[at(0.0)] - 1.0))
            elif m.kind == "risk":
                values.append(1.0 - y[at(m.args[0])])
            else:  # hr: the cumulative hazard; divided by the untreated one later
                values.append(-jnp.log(jnp.maximum(y[at(m.args[0])], 1e-300)))
        return jnp.stack(values)


def _extremum(t, y, breaks=None, inside=None):
    """Maximum of samples ``y`` at times ``t`` refined by the parabola through the largest
    sample and its neighbours (exact for a quadratic peak; the grid value at the ends, and
    where a dose falls between the three samples: a parabola across a bolus jump or an
    infusion's end would overshoot). With ``inside`` (T,) only those samples count, and a
    parabola needs all three inside (the window's ends are ends)."""
    n = t.shape[0]
    if inside is not None:
        # a finite floor, not -inf: the parabola's algebra (and its gradient) stay finite
        y = jnp.where(inside, y, jnp.min(y) - 1.0 - jnp.abs(jnp.min(y)))
    i = jnp.argmax(y)
    j = jnp.clip(i, 1, n - 2)
    t0, t1, t2 = t[j - 1], t[j], t[j + 1]
    y0, y1, y2 = y[j - 1], y[j], y[j + 1]
    # vertex of the parabola through three (possibly unevenly spaced) points
    distinct = (t1 > t0) & (t2 > t1)  # padding repeats the last time
    h01, h12 = jnp.where(distinct, t1 - t0, 1.0), jnp.where(distinct, t2 - t1, 1.0)
    d01, d12 = (y1 - y0) / h01, (y2 - y1) / h12
    a = (d12 - d01) / (h01 + h12)
    smooth = True if breaks is None else ~breaks[j] & ~breaks[j + 1]
    interior = (i > 0) & (i < n - 1) & distinct & (a < 0) & smooth
    if inside is not None:
        interior = interior & inside[j - 1] & inside[j + 1]
    a_safe = jnp.where(interior, a, -1.0)
    b = d01 - a_safe * (t0 + t1)
    tv = jnp.clip(-b / (2 * a_safe), t0, t2)
    yv = y0 + d01 * (tv - t0) + a_safe * (tv - t0) * (tv - t1)
    peak = jnp.where(interior, jnp.maximum(yv, y1), y[i])
    when = jnp.where(interior, tv, t[i])
    return peak, when


def _time_above(t, y, x):
    """Time with ``y > x``, linear interpolation between samples (repeated times add 0)."""
    y0, y1, dt = y[:-1] - x, y[1:] - x, jnp.diff(t)
    both = (y0 > 0) & (y1 > 0)
    cross = (y0 > 0) != (y1 > 0)
    denom = jnp.where(cross, jnp.abs(y1 - y0), 1.0)
    frac = jnp.where(cross, jnp.maximum(y0, y1) / denom, 0.0)
    return jnp.sum(jnp.where(both, dt, 0.0) + jnp.where(cross, frac * dt, 0.0))
