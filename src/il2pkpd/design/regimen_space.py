"""The space a regimen is optimised over: a regimen template with named variables, each a
continuous range or a list of choices, and its dose events as an affine function of the
continuous variables.

A template is a regimen in the regimen language (:func:`il2pkpd.dosing.parse_regimen`) with
``{name}`` placeholders::

    "{dose} MIU sc qd x{induction} then {dose} MIU sc q{interval} x7"

and the space gives each name its values (text, as on the command line, or a dict)::

    "dose=0.1..3; interval=1d..7d; induction=0..7"
    "dose=0.1..3; interval=1d,2d,3d,7d; route=sc,iv"

* ``lo..hi`` is a continuous range (``1d..7d`` or ``1..7 d``: a unit, if any, is pasted after
  the number in the template). A range used as a count (``x{name}``) is a range of integers,
  enumerated like a list.
* ``a,b,c`` is a list of choices, enumerated (numbers with units, routes, units ...).
* A block whose count is 0 (``x{induction}`` with induction 0) is left out.

Continuous variables may stand only where the dose events depend on them affinely: dose
amounts, intervals and start times (the events' amounts and times are then linear in them,
which makes the regimen differentiable through the solver). Anything else (a count, an
infusion duration, a route) must be a list; :meth:`RegimenSpace.structure` checks this on
the actual events and refuses a continuous variable it finds elsewhere, naming it.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

from ..dosing import Record, Records, parse_regimen
from ..errors import OptionError, RegimenError
from ..solve import build_events

__all__ = ["Range", "Choice", "RegimenSpace", "Structure", "parse_space", "format_number"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-z/0-9]*)\s*\.\.\s*({_NUMBER})\s*([A-Za-z/0-9]*)\s*$")
_EVENT_FLOATS = ("t0", "amt", "rate")  # the fields a continuous variable may move (affinely)


def format_number(x: float) -> str:
    """A number as the regimen language reads it (plain decimals, no exponent)."""
    text = f"{float(x):.10f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


@dataclass(frozen=True)
class Range:
    """A continuous range ``[lo, hi]`` (``unit`` is pasted after the number)."""

    lo: float
    hi: float
    unit: str = ""

    def text(self, x: float) -> str:
        return format_number(x) + self.unit

    def describe(self) -> str:
        return f"{format_number(self.lo)}..{format_number(self.hi)}{(' ' + self.unit) if self.unit else ''}"


@dataclass(frozen=True)
class Choice:
    """A list of values (text as pasted into the template), enumerated."""

    values: tuple[str, ...]

    def describe(self) -> str:
        return ",".join(self.values)


def parse_space(space) -> dict[str, Range | Choice]:
    """``"dose=0.1..3 MIU; interval=1d,2d"`` or ``{"dose": (0.1, 3), "interval": ["1d", "2d"]}``
    -> ``{name: Range | Choice}`` (see the module docstring)."""
    items: list[tuple[str, object]]
    if isinstance(space, str):
        items = []
        for part in filter(None, (p.strip() for p in space.split(";"))):
            if "=" not in part:
                raise OptionError(f"space item {part!r} must look like NAME=LO..HI or NAME=A,B,C")
            name, value = (s.strip() for s in part.split("=", 1))
            items.append((name, value))
    elif isinstance(space, dict):
        items = list(space.items())
    else:
        raise OptionError(f"`space` must be text such as 'dose=0.1..3; interval=1d,2d' or a dict, got {type(space).__name__}")
    if not items:
        raise OptionError("`space` names no variable: give at least one, e.g. 'dose=0.1..3'")
    out: dict[str, Range | Choice] = {}
    for name, value in items:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise OptionError(f"space variable name {name!r} must be a plain identifier")
        if name in out:
            raise OptionError(f"space variable {name!r} is given twice")
        out[name] = _variable(name, value)
    return out


def _variable(name: str, value) -> Range | Choice:
    if isinstance(value, (Range, Choice)):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3) and all(isinstance(v, (int, float)) for v in value[:2]):
        lo, hi, unit = float(value[0]), float(value[1]), (value[2] if len(value) == 3 else "")
    elif isinstance(value, (list, tuple)):
        values = tuple(format_number(v) if isinstance(v, (int, float)) else str(v).strip() for v in value)
        return _choice(name, values)
    elif isinstance(value, str) and ".." in value:
        m = _RANGE.match(value)
        if not m:
            raise OptionError(f"space variable {name!r}: {value!r} must look like LO..HI, e.g. 0.1..3 or 1d..7d")
        lo, u1, hi, u2 = float(m.group(1)), m.group(2), float(m.group(3)), m.group(4)
        if u1 and u2 and u1 != u2:
            raise OptionError(f"space variable {name!r}: {value!r} has two units ({u1!r}, {u2!r}); give one")
        unit = u1 or u2
    elif isinstance(value, str):
        return _choice(name, tuple(v.strip() for v in value.split(",")))
    else:
        raise OptionError(f"space variable {name!r}: {value!r} must be a range LO..HI or a list of choices")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise OptionError(f"space variable {name!r}: the range needs finite LO < HI, got {lo!r}..{hi!r}")
    return Range(lo, hi, unit)


def _choice(name: str, values: tuple[str, ...]) -> Choice:
    if not values or any(not v for v in values):
        raise OptionError(f"space variable {name!r}: empty choice in {list(values)}")
    if len(set(values)) != len(values):
        raise OptionError(f"space variable {name!r}: repeated choice in {list(values)}")
    return Choice(values)


@dataclass
class Structure:
    """The dose events of one discrete combination as an affine function of the continuous
    variables ``x`` (m,): ``t0(x) = t0 + d["t0"] @ (x - x0)``, the same for ``amt`` and
    ``rate`` (E,), and the regimen's total dose ``total + dtotal @ (x - x0)`` (in the template's dose
    unit, when all blocks share one)."""

    choice: dict[str, str]
    arrays: dict[str, np.ndarray]
    x0: np.ndarray
    d: dict[str, np.ndarray]
    total: float
    dtotal: np.ndarray
    total_unit: str | None


class RegimenSpace:
    """A regimen template and the space of its variables.

    Parameters
    ----------
    template
        Regimen text with ``{name}`` placeholders (module docstring), or a function of a
        combination of the discrete variables (``{name: text}``) returning such text.
    space
        The variables (:func:`parse_space` input). Every placeholder needs a variable, and
        every variable a placeholder.
    counts, consumes
        For a template function: the discrete variables that are counts (integer ranges), and
        those it reads itself (they need no placeholder).
    """

    def __init__(self, template, space, *, counts: tuple[str, ...] = (), consumes: tuple[str, ...] = ()):
        self.variables = parse_space(space)
        if callable(template):  # one template per combination of the variables it ``consumes``
            self._template_of, self.template = template, getattr(template, "description", "the default regimen")
            used = set(consumes) | {n for n, v in self.variables.items() if isinstance(v, Range) and n not in counts}
        else:
            if not isinstance(template, str) or not template.strip():
                raise OptionError(f"`regimen` template must be regimen text with {{name}} placeholders, got {template!r}")
            self.template = template.strip()
            self._template_of = lambda choice: self.template
            used = set(_PLACEHOLDER.findall(self.template))
            counts = tuple(re.findall(r"\bx\{([A-Za-z_][A-Za-z0-9_]*)\}", self.template))
        missing = sorted(used - set(self.variables) - set(consumes))
        if missing:
            raise OptionError(f"regimen template {self.template!r} uses {missing}, which `space` does not give")
        unused = sorted(set(self.variables) - used)
        if unused:
            raise OptionError(f"`space` gives {unused}, which the regimen template {self.template!r} does not use")
        counts = set(counts)
        self.continuous: list[str] = []
        self.discrete: dict[str, tuple[str, ...]] = {}
        for name, var in self.variables.items():
            if isinstance(var, Choice):
                self.discrete[name] = var.values
            elif name in counts:  # a count: the integers of the range
                lo, hi = math.ceil(var.lo - 1e-9), math.floor(var.hi + 1e-9)
                if var.unit or lo > hi or lo < 0:
                    raise OptionError(f"space variable {name!r} is a count (x{{{name}}}): its range {var.describe()} must hold integers >= 0, without a unit")
                self.discrete[name] = tuple(str(k) for k in range(lo, hi + 1))
            else:
                self.continuous.append(name)
        self.lower = np.array([self.variables[n].lo for n in self.continuous], dtype=float)
        self.upper = np.array([self.variables[n].hi for n in self.continuous], dtype=float)

    def combinations(self) -> list[dict[str, str]]:
        """Every combination of the discrete variables (one empty dict if there are none)."""
        names = list(self.discrete)
        return [dict(zip(names, vals)) for vals in itertools.product(*(self.discrete[n] for n in names))]

    def text(self, choice: dict[str, str], x) -> str:
        """The regimen text at discrete ``choice`` and continuous values ``x``; blocks with
        count 0 are left out (``None`` when nothing is left)."""
        values = dict(choice)
        for name, v in zip(self.continuous, np.atleast_1d(np.asarray(x, dtype=float)), strict=True):
            values[name] = self.variables[name].text(float(v))
        template = self._template_of(choice)
        missing = sorted(set(_PLACEHOLDER.findall(template)) - set(values))
        if missing:
            raise OptionError(f"regimen template {template!r} uses {missing}, which `space` does not give")
        filled = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
        blocks = [b for b in re.split(r"\s+then\s+", filled, flags=re.IGNORECASE) if not re.search(r"\bx0+\b", b)]
        return " then ".join(blocks) if blocks else None

    def structure(self, model, choice: dict[str, str]) -> Structure:
        """The dose events at ``choice`` as an affine function of the continuous variables.

        The events are built at the centre of the ranges and moved by a quarter of each range;
        the differences give the slopes, and a third point checks that the events really are
        affine there (a continuous variable in a count, a duration or a route is refused)."""
        m = len(self.continuous)
        x0 = 0.5 * (self.lower + self.upper)
        step = 0.25 * (self.upper - self.lower)
        base = self._events(model, choice, x0)
        d = {f: np.zeros((base[f].shape[0], m)) for f in _EVENT_FLOATS}
        total0, unit0 = self._total(choice, x0)
        dtotal = np.zeros(m)
        for j in range(m):
            x = x0.copy()
            x[j] += step[j]
            ev = self._events(model, choice, x)
            self._same_structure(base, ev, choice, self.continuous[j])
            for f in _EVENT_FLOATS:
                d[f][:, j] = (ev[f] - base[f]) / step[j]
            total, unit = self._total(choice, x)
            dtotal[j] = (total - total0) / step[j] if unit == unit0 and total0 is not None else 0.0
        if m:  # the affine model must reproduce a point off the axes
            x = x0 - 0.5 * step
            ev = self._events(model, choice, x)
            self._same_structure(base, ev, choice, ", ".join(self.continuous))
            for f in _EVENT_FLOATS:
                pred = base[f] + d[f] @ (x - x0)
                if not np.allclose(ev[f], pred, rtol=1e-8, atol=1e-9 * max(1.0, float(np.max(np.abs(ev[f]))))):
                    raise OptionError(f"continuous variables {self.continuous} do not enter the dose events of {self.template!r} linearly "
                                      f"(field {f}); only amounts, intervals and start times can be optimised continuously: give the others as lists")
        return Structure(dict(choice), base, x0, d, total0 if total0 is not None else math.nan, dtotal, unit0)

    def _events(self, model, choice, x) -> dict[str, np.ndarray]:
        text = self.text(choice, x)
        if text is None:
            raise OptionError(f"regimen template {self.template!r} at {choice} has no dose block left (every count is 0)")
        try:
            doses = parse_regimen(text).to_records(model)
        except RegimenError as exc:
            raise OptionError(f"regimen template {self.template!r} at {self._where(choice, x)} gives {text!r}: {exc}") from None
        recs = [Record(time=r.time, evid=1, amt=r.amt, cmt=r.cmt, rate=r.rate, row=i) for i, r in enumerate(doses)]
        return build_events(Records(recs, subject=text), model, output_rows="obs").arrays

    def _where(self, choice, x) -> str:
        vals = dict(choice) | {n: format_number(v) for n, v in zip(self.continuous, x)}
        return ", ".join(f"{k}={v}" for k, v in vals.items())

    def _same_structure(self, a, b, choice, name) -> None:
        same = a["kind"].shape == b["kind"].shape and all(
            np.array_equal(a[f], b[f]) for f in a if f not in _EVENT_FLOATS and f != "seq")
        if same:
            same = np.allclose(a["ii"], b["ii"])
        if not same:
            raise OptionError(f"continuous variable(s) {name} change the dose events' structure in {self.template!r} at {choice} "
                              f"(a count, route, duration or infusion rate): give them as a list of choices, e.g. {name}=1,2,3")

    def _total(self, choice, x) -> tuple[float | None, str | None]:
        text = self.text(choice, x)
        blocks = parse_regimen(text).blocks
        units = {b.unit for b in blocks}
        if len(units) != 1:
            return None, None
        return float(sum(b.amount * b.count for b in blocks)), units.pop()
