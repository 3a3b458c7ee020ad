"""Dimensional analysis of sympy expressions.

Each symbol carries a dimension vector over :data:`il2pkpd.units.BASE_DIMENSIONS`. The
entries are sympy numbers, or sympy expressions when a dimensional quantity is raised to
a parameter (``conc**gamma`` has dimension ``substance^gamma length^(-3*gamma)``), so a
Hill term ``conc^g/(ec50^g + conc^g)`` is checked exactly, without evaluating anything.
A literal zero fits any dimension (``max(conc, 0)``).
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from ..units import BASE_DIMENSIONS
from ._special import SPECIAL

_SPECIAL_BY_CLASS = {special.function: (name, special) for name, special in SPECIAL.items()}

__all__ = ["DimensionError", "dimension_of", "dims_equal", "format_dims"]

Dims = tuple  # tuple of sympy expressions, one per base dimension
_ZERO: Dims = tuple(sp.Integer(0) for _ in BASE_DIMENSIONS)


class DimensionError(ValueError):
    """Terms of different dimensions are combined."""


def format_dims(d: Dims | None) -> str:
    if d is None:
        return "any"
    parts = []
    for name, e in zip(BASE_DIMENSIONS, d):
        e = sp.nsimplify(sp.simplify(e))
        if e == 0:
            continue
        parts.append(name if e == 1 else f"{name}^{e}")
    return " ".join(parts) if parts else "dimensionless"


def dims_equal(a: Dims | None, b: Dims | None) -> bool:
    if a is None or b is None:
        return True
    return all(sp.simplify(x - y) == 0 for x, y in zip(a, b))


def _dimless(d: Dims | None) -> bool:
    return d is None or dims_equal(d, _ZERO)


def dimension_of(expr: sp.Basic, dims: Mapping[sp.Symbol, Dims]) -> Dims | None:
    """Dimension vector of ``expr`` (``None`` for a literal zero, which fits any).

    Raises
    ------
    DimensionError
        Naming the sub-expressions whose dimensions clash.
    """
    if expr.is_Number:
        return None if expr == 0 else _ZERO
    if isinstance(expr, sp.NumberSymbol):
        return _ZERO
    if expr.is_Symbol:
        return dims[expr]
    if expr.is_Add:
        return _same(expr.args, dims, "added or subtracted", expr)
    if expr.is_Mul:
        out = _ZERO
        for a in expr.args:
            d = dimension_of(a, dims)
            if d is None:  # a zero factor
                return None
            out = tuple(x + y for x, y in zip(out, d))
        return out
    if expr.is_Pow:
        base, exponent = expr.args
        d_exp = dimension_of(exponent, dims)
        if not _dimless(d_exp):
            raise DimensionError(
                f"exponent `{exponent}` must be dimensionless, but has dimension {format_dims(d_exp)}"
            )
        d_base = dimension_of(base, dims)
        if d_base is None:
            return None
        return tuple(sp.expand(x * exponent) for x in d_base)
    if isinstance(expr, (sp.exp, sp.log, sp.tanh, sp.sin, sp.cos)):
        d = dimension_of(expr.args[0], dims)
        if not _dimless(d):
            raise DimensionError(
                f"the argument of `{type(expr).__name__}` must be dimensionless, but "
                f"`{expr.args[0]}` has dimension {format_dims(d)}"
            )
        return _ZERO
    if type(expr) in _SPECIAL_BY_CLASS:
        return _special_dims(expr, dims)
    if isinstance(expr, sp.Abs):
        return dimension_of(expr.args[0], dims)
    if isinstance(expr, (sp.Max, sp.Min)):
        return _same(expr.args, dims, f"compared in {type(expr).__name__.lower()}()", expr)
    if isinstance(expr, sp.Piecewise):
        values = []
        for value, cond in expr.args:
            dimension_of(cond, dims)
            values.append(value)
        return _same(values, dims, "the branches of if_else()", expr)
    if isinstance(expr, sp.core.relational.Relational):
        _same(expr.args, dims, "compared", expr)
        return _ZERO
    if isinstance(expr, (sp.And, sp.Or, sp.Not)):
        for a in expr.args:
            dimension_of(a, dims)
        return _ZERO
    if expr in (sp.true, sp.false):
        return _ZERO
    raise DimensionError(f"cannot work out the dimension of `{expr}` ({type(expr).__name__})")


def _special_dims(expr, dims) -> Dims:
    """Dimension of a call to a function of :data:`SPECIAL`, by its own rule."""
    name, special = _SPECIAL_BY_CLASS[type(expr)]

    def require_dimensionless(i: int) -> None:
        d = dimension_of(expr.args[i], dims)
        if not _dimless(d):
            raise DimensionError(f"argument {i + 1} of {special.signature} must be dimensionless, but `{expr.args[i]}` has dimension {format_dims(d)}")

    def same(indices, what: str) -> Dims | None:
        return _same([expr.args[i] for i in indices], dims, what, expr)

    return special.dims(expr.args, require_dimensionless, same, _ZERO)


def _same(args, dims, what: str, whole) -> Dims | None:
    found: list[tuple[sp.Basic, Dims]] = []
    for a in args:
        d = dimension_of(a, dims)
        if d is None:
            continue
        for other, d_other in found:
            if not dims_equal(d, d_other):
                raise DimensionError(
                    f"terms of different dimension are {what}: `{other}` has "
                    f"{format_dims(d_other)} but `{a}` has {format_dims(d)} (in `{whole}`)"
                )
        found.append((a, d))
    return found[0][1] if found else None
