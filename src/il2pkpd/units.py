"""Units: parsing, dimension algebra and conversions.

il2pkpd keeps units at the edges and plain floats in the JAX core. Every quantity in a
model file declares a unit string (``"1/h"``, ``"pM"``, ``"MIU"``, ``"L"``, ``"%"``); the
model compiler checks that each equation is dimensionally consistent and folds the
conversion factors into the generated code, so that a rate given in ``1/h`` works in a
model whose clock runs in days.

Base dimensions and the canonical unit of each:

=========  ==========  ============================================================
dimension  canonical   notes
=========  ==========  ============================================================
time       day         a model chooses its own clock (``time_unit``), see below
length     dm          so that the canonical volume is 1 L (= 1 dm^3)
mass       mg
substance  nmol        molar concentrations: 1 pM = 1e-3 nmol/L
activity   MIU         international units of biological activity (IU)
=========  ==========  ============================================================

IU (activity), mass and moles are different dimensions: converting between them needs a
drug's specific activity and molecular weight (:class:`Drug`); for aldesleukin
18 MIU = 1.1 mg and MW = 15,300 Da [BRIEF S28], so 1 MIU = 61.1 ug = 4.0 nmol.

Percent (``%``) is the dimensionless number 0.01; ``fold`` and ``1`` are 1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from .errors import Il2pkpdError

__all__ = [
    "BASE_DIMENSIONS",
    "Unit",
    "UnitError",
    "Drug",
    "ALDESLEUKIN",
    "DRUGS",
    "drug_named",
    "parse_unit",
    "convert",
    "conversion_factor",
    "convert_amount",
    "bsa_mosteller",
    "bsa_dubois",
]

BASE_DIMENSIONS: tuple[str, ...] = ("time", "length", "mass", "substance", "activity")


class UnitError(Il2pkpdError, ValueError):
    """A unit string cannot be parsed, or two units cannot be converted."""


@dataclass(frozen=True)
class Unit:
    """A unit: a scale relative to the canonical units and a dimension vector.

    Attributes
    ----------
    scale
        Value of one of this unit in canonical units (e.g. ``h`` -> 1/24 day).
    dims
        Exponents of the base dimensions, in the order of :data:`BASE_DIMENSIONS`.
    text
        The string the unit was parsed from (for messages).
    """

    scale: float
    dims: tuple[Fraction, ...]
    text: str = ""

    def __mul__(self, other: Unit) -> Unit:
        return Unit(
            self.scale * other.scale,
            tuple(a + b for a, b in zip(self.dims, other.dims)),
            f"{self.text}*{other.text}",
        )

    def __truediv__(self, other: Unit) -> Unit:
        return Unit(
            self.scale / other.scale,
            tuple(a - b for a, b in zip(self.dims, other.dims)),
            f"{self.text}/({other.text})",
        )

    def __pow__(self, power: Fraction | int) -> Unit:
        p = Fraction(power)
        return Unit(self.scale ** float(p), tuple(d * p for d in self.dims), f"({self.text})^{p}")

    @property
    def is_dimensionless(self) -> bool:
        return all(d == 0 for d in self.dims)

    def dimension_text(self) -> str:
        """The dimension in words, e.g. ``'substance length^-3'`` (``'dimensionless'``)."""
        return dimension_text(self.dims)

    def factor_in(self, time_unit: Unit) -> float:
        """Scale of this unit in a coherent system whose clock is ``time_unit``.

        The canonical clock is the day; a model running in hours has ``time_unit = h``,
        and ``1/h`` has factor 1 there while ``1/day`` has factor 1/24.
        """
        t_exp = self.dims[0]
        return self.scale / (time_unit.scale ** float(t_exp))


def dimension_text(dims: tuple) -> str:
    parts = []
    for name, e in zip(BASE_DIMENSIONS, dims):
        if e == 0:
            continue
        parts.append(name if e == 1 else f"{name}^{e}")
    return " ".join(parts) if parts else "dimensionless"


def _dims(**kw: int) -> tuple[Fraction, ...]:
    return tuple(Fraction(kw.get(name, 0)) for name in BASE_DIMENSIONS)


_DL = _dims()
_T = _dims(time=1)
_L = _dims(length=1)
_M = _dims(mass=1)
_N = _dims(substance=1)
_A = _dims(activity=1)
_VOL = _dims(length=3)
_CONC = _dims(substance=1, length=-3)

# Units that take SI prefixes: symbol -> (scale in canonical units, dims).
_PREFIXABLE: dict[str, tuple[float, tuple[Fraction, ...]]] = {
    "s": (1.0 / 86400.0, _T),
    "m": (10.0, _L),  # metre = 10 dm
    "g": (1e3, _M),  # gram = 1000 mg
    "L": (1.0, _VOL),
    "l": (1.0, _VOL),
    "mol": (1e9, _N),  # mole = 1e9 nmol
    "M": (1e9, _CONC),  # molar = mol/L
    "IU": (1e-6, _A),  # IU = 1e-6 MIU
}
_PREFIXES: dict[str, float] = {
    "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3, "d": 1e-1, "c": 1e-2, "m": 1e-3,
    "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "mc": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15,
}
# Units that do not take prefixes (checked first, so "min" is minutes, not milli-in).
_PLAIN: dict[str, tuple[float, tuple[Fraction, ...]]] = {
    "min": (1.0 / 1440.0, _T),
    "h": (1.0 / 24.0, _T),
    "hr": (1.0 / 24.0, _T),
    "hour": (1.0 / 24.0, _T),
    "hours": (1.0 / 24.0, _T),
    "d": (1.0, _T),
    "day": (1.0, _T),
    "days": (1.0, _T),
    "wk": (7.0, _T),
    "week": (7.0, _T),
    "weeks": (7.0, _T),
    "mo": (365.25 / 12.0, _T),
    "month": (365.25 / 12.0, _T),
    "y": (365.25, _T),
    "yr": (365.25, _T),
    "year": (365.25, _T),
    "years": (365.25, _T),
    "%": (0.01, _DL),
    "fold": (1.0, _DL),
    "ratio": (1.0, _DL),
    "cells": (1.0, _DL),
    "cell": (1.0, _DL),
    "Da": (1e3 / 1e9, _dims(mass=1, substance=-1)),  # g/mol in mg/nmol
    "kDa": (1e3 * 1e3 / 1e9, _dims(mass=1, substance=-1)),
}

# a name may carry a power suffix glued to it: m2, cm2, m3 (never a separate factor)
_TOKEN = re.compile(r"\s*(?:(\*\*|[*/^()·-])|(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|([A-Za-zµμ%]+\d*))")


def _lookup(name: str, text: str) -> tuple[float, tuple[Fraction, ...]]:
    if name in _PLAIN:
        return _PLAIN[name]
    if name in _PREFIXABLE:
        return _PREFIXABLE[name]
    for plen in (2, 1):
        prefix, base = name[:plen], name[plen:]
        if prefix in _PREFIXES and base in _PREFIXABLE:
            scale, dims = _PREFIXABLE[base]
            return _PREFIXES[prefix] * scale, dims
    # power suffix: m2, cm2, m3
    m = re.fullmatch(r"([A-Za-zµμ%]+)(\d+)", name)
    if m:
        scale, dims = _lookup(m.group(1), text)
        p = int(m.group(2))
        return scale**p, tuple(d * p for d in dims)
    raise UnitError(
        f"unknown unit {name!r} in {text!r}. Known units: time (min, h, day, week, month, "
        "year), volume (L, mL, uL, dL), mass (g, mg, ug, ng, kg), substance (mol, nmol, "
        "pmol; molar M, nM, pM), activity (IU, kIU, MIU), length/area (m, cm, m2), "
        "dimensionless (1, %, fold)."
    )


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        s = text.strip()
        while pos < len(s):
            m = _TOKEN.match(s, pos)
            if not m or m.end() == pos:
                raise UnitError(f"cannot parse unit {text!r}: unexpected character {s[pos]!r}")
            op, num, name = m.groups()
            if op:
                self.tokens.append(("op", "^" if op == "**" else ("*" if op == "·" else op)))
            elif num:
                self.tokens.append(("num", num))
            else:
                self.tokens.append(("name", name))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> tuple[float, tuple[Fraction, ...]]:
        if not self.tokens:
            raise UnitError("unit string is empty; use '1' for a dimensionless quantity")
        val = self.expr()
        if self.peek() is not None:
            raise UnitError(f"cannot parse unit {self.text!r}: unexpected {self.peek()[1]!r}")
        return val

    def expr(self) -> tuple[float, tuple[Fraction, ...]]:
        scale, dims = self.term()
        while True:
            tok = self.peek()
            if tok == ("op", "*") or tok == ("op", "/"):
                self.take()
                s2, d2 = self.term()
                if tok[1] == "*":
                    scale, dims = scale * s2, tuple(a + b for a, b in zip(dims, d2))
                else:
                    scale, dims = scale / s2, tuple(a - b for a, b in zip(dims, d2))
            elif tok is not None and tok[0] in ("name", "num") or tok == ("op", "("):
                # implicit multiplication: "IU h/mL"
                s2, d2 = self.term()
                scale, dims = scale * s2, tuple(a + b for a, b in zip(dims, d2))
            else:
                return scale, dims

    def term(self) -> tuple[float, tuple[Fraction, ...]]:
        scale, dims = self.factor()
        if self.peek() == ("op", "^"):
            self.take()
            if self.peek() == ("op", "("):
                self.take()
                p = self._signed_number()
                if self.peek() != ("op", ")"):
                    raise UnitError(f"cannot parse unit {self.text!r}: missing ')'")
                self.take()
            else:
                p = self._signed_number()
            scale, dims = scale ** float(p), tuple(d * p for d in dims)
        return scale, dims

    def _signed_number(self) -> Fraction:
        tok = self.peek()
        neg = False
        if tok == ("op", "-"):
            neg = True
            self.take()
            tok = self.peek()
        if tok is None or tok[0] != "num":
            raise UnitError(f"cannot parse unit {self.text!r}: exponent must be a number")
        self.take()
        p = Fraction(tok[1]).limit_denominator(1000)
        return -p if neg else p

    def factor(self) -> tuple[float, tuple[Fraction, ...]]:
        tok = self.peek()
        if tok is None:
            raise UnitError(f"cannot parse unit {self.text!r}: it ends too early")
        self.take()
        if tok == ("op", "("):
            val = self.expr()
            if self.peek() != ("op", ")"):
                raise UnitError(f"cannot parse unit {self.text!r}: missing ')'")
            self.take()
            return val
        if tok[0] == "num":
            return float(tok[1]), _DL
        if tok[0] == "name":
            return _lookup(tok[1], self.text)
        raise UnitError(f"cannot parse unit {self.text!r}: unexpected {tok[1]!r}")


@lru_cache(maxsize=512)
def parse_unit(text: str) -> Unit:
    """Parse a unit string such as ``"L/h"``, ``"1/day"``, ``"pM"``, ``"MIU/m2"``.

    Parameters
    ----------
    text
        The unit. ``"1"`` (or ``""``-free ``"fold"``) is dimensionless; ``"%"`` is 0.01.

    Returns
    -------
    Unit

    Raises
    ------
    UnitError
        If the string cannot be parsed or names an unknown unit.
    """
    if not isinstance(text, str):
        raise UnitError(f"`unit` must be a string, got {text!r} ({type(text).__name__})")
    shown = text if len(text) <= 60 else f"{text[:40]}...{text[-10:]}"
    try:
        scale, dims = _Parser(text).parse()
    except (ArithmeticError, RecursionError) as exc:  # 'mg/0', 'kg^1e10', nesting deeper than Python's stack
        raise UnitError(f"unit {shown!r} cannot be evaluated: {type(exc).__name__}: {str(exc)[:80]}") from None
    if not (math.isfinite(scale) and scale > 0):  # '1e400 mg', '0 mg'
        raise UnitError(f"unit {shown!r} must have a positive finite scale, got {scale!r}")
    return Unit(scale, dims, text)


def conversion_factor(from_unit: str | Unit, to_unit: str | Unit) -> float:
    """Factor ``f`` such that ``value_in_to = f * value_in_from``.

    Raises
    ------
    UnitError
        If the two units have different dimensions.
    """
    a = parse_unit(from_unit) if isinstance(from_unit, str) else from_unit
    b = parse_unit(to_unit) if isinstance(to_unit, str) else to_unit
    if a.dims != b.dims:
        raise UnitError(
            f"cannot convert {a.text!r} ({a.dimension_text()}) to {b.text!r} "
            f"({b.dimension_text()}): the dimensions differ"
        )
    return a.scale / b.scale


def convert(value, from_unit: str | Unit, to_unit: str | Unit):
    """Convert ``value`` (float or array) from one unit to another of the same dimension."""
    return value * conversion_factor(from_unit, to_unit)


@dataclass(frozen=True)
class Drug:
    """Conversion constants of a drug between activity (IU), mass and moles.

    Attributes
    ----------
    name
        Drug name.
    miu_per_mg
        Specific activity, MIU per mg of protein.
    mw_g_per_mol
        Molecular weight, g/mol (Da).
    source
        Source id in ``shared/domain/BRIEF.md``.
    """

    name: str
    miu_per_mg: float | None = None
    mw_g_per_mol: float | None = None
    source: str = ""

    def _to_mg(self, value: float, unit: Unit) -> float:
        if unit.dims == _M:
            return value * unit.scale
        if unit.dims == _A:
            if self.miu_per_mg is None:
                raise UnitError(f"drug {self.name!r} has no specific activity; cannot convert IU")
            return value * unit.scale / self.miu_per_mg
        if unit.dims == _N:
            if self.mw_g_per_mol is None:
                raise UnitError(f"drug {self.name!r} has no molecular weight; cannot convert moles")
            # nmol * g/mol = ng -> mg
            return value * unit.scale * self.mw_g_per_mol * 1e-6
        raise UnitError(f"{unit.text!r} ({unit.dimension_text()}) is not an amount of drug")

    def _from_mg(self, mg: float, unit: Unit) -> float:
        if unit.dims == _M:
            return mg / unit.scale
        if unit.dims == _A:
            if self.miu_per_mg is None:
                raise UnitError(f"drug {self.name!r} has no specific activity; cannot convert IU")
            return mg * self.miu_per_mg / unit.scale
        if unit.dims == _N:
            if self.mw_g_per_mol is None:
                raise UnitError(f"drug {self.name!r} has no molecular weight; cannot convert moles")
            return mg / (self.mw_g_per_mol * 1e-6) / unit.scale
        raise UnitError(f"{unit.text!r} ({unit.dimension_text()}) is not an amount of drug")


#: Aldesleukin: 18 MIU = 1.1 mg, MW 15,300 Da [BRIEF S28]; 1 MIU = 61.1 ug = 4.0 nmol.
ALDESLEUKIN = Drug("aldesleukin", miu_per_mg=18.0 / 1.1, mw_g_per_mol=15300.0, source="S28")

#: Drugs whose specific activity and molecular weight il2pkpd knows, by lower-case name.
DRUGS = {ALDESLEUKIN.name: ALDESLEUKIN}


def drug_named(name: str) -> Drug | None:
    """The :class:`Drug` called ``name`` (a model's ``drug``, any case), or ``None`` when il2pkpd
    does not know it: its amounts then convert only within one dimension."""
    return DRUGS.get(name.lower())


def convert_amount(value: float, from_unit: str, to_unit: str, drug: Drug | None = None) -> float:
    """Convert an amount of drug, across IU / mass / moles when a ``drug`` is given.

    Examples
    --------
    >>> round(convert_amount(1.0, "MIU", "nmol", ALDESLEUKIN), 2)
    3.99
    """
    a, b = parse_unit(from_unit), parse_unit(to_unit)
    if a.dims == b.dims:
        return value * a.scale / b.scale
    if drug is None:
        raise UnitError(
            f"cannot convert {from_unit!r} ({a.dimension_text()}) to {to_unit!r} "
            f"({b.dimension_text()}) without a drug's specific activity / molecular weight"
        )
    return drug._from_mg(drug._to_mg(value, a), b)


def bsa_mosteller(height_cm: float, weight_kg: float) -> float:
    """Body surface area (m2) by Mosteller: ``sqrt(height_cm * weight_kg / 3600)``."""
    if height_cm <= 0 or weight_kg <= 0:
        raise UnitError(
            f"`height_cm` and `weight_kg` must be > 0, got {height_cm!r} and {weight_kg!r}"
        )
    return math.sqrt(height_cm * weight_kg / 3600.0)


def bsa_dubois(height_cm: float, weight_kg: float) -> float:
    """Body surface area (m2) by DuBois: ``0.007184 * W^0.425 * H^0.725``."""
    if height_cm <= 0 or weight_kg <= 0:
        raise UnitError(
            f"`height_cm` and `weight_kg` must be > 0, got {height_cm!r} and {weight_kg!r}"
        )
    return 0.007184 * weight_kg**0.425 * height_cm**0.725
