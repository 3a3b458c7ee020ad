"""Parse model expressions into sympy through a whitelist (never ``eval``).

The text is parsed by Python's :mod:`ast` (syntax only), and the tree is walked node by
node: numbers, declared names, arithmetic, comparisons and a fixed set of functions are
turned into sympy objects; anything else is refused with a message naming the offending
piece. ``^`` is accepted as a power, as in NONMEM and mrgsolve.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping

import sympy as sp

__all__ = ["ExpressionError", "parse_expression", "FUNCTIONS"]


class ExpressionError(ValueError):
    """An expression is malformed or uses something outside the whitelist."""

    def __init__(self, message: str, symbol: str | None = None):
        super().__init__(message)
        self.symbol = symbol


def _if_else(cond, a, b):
    return sp.Piecewise((a, cond), (b, True))


def _expit(x):
    return 1 / (1 + sp.exp(-x))


def _logit(p):
    return sp.log(p / (1 - p))


#: Functions an expression may call, by name.
FUNCTIONS: dict[str, Callable] = {
    "exp": sp.exp,
    "log": sp.log,
    "ln": sp.log,
    "log10": lambda x: sp.log(x) / sp.log(10),
    "sqrt": sp.sqrt,
    "abs": sp.Abs,
    "min": sp.Min,
    "max": sp.Max,
    "pow": lambda a, b: a**b,
    "tanh": sp.tanh,
    "expit": _expit,
    "logit": _logit,
    "if_else": _if_else,
}
_ARITY = {"min": None, "max": None, "pow": 2, "if_else": 3}

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_CMPOPS = {
    ast.Lt: sp.StrictLessThan,
    ast.LtE: sp.LessThan,
    ast.Gt: sp.StrictGreaterThan,
    ast.GtE: sp.GreaterThan,
}


def parse_expression(text: str, symbols: Mapping[str, sp.Symbol]) -> sp.Expr:
    """Parse ``text`` into a sympy expression over the given ``symbols``.

    Parameters
    ----------
    text
        The expression, e.g. ``"ka*depot - cl/v*central"``. Numbers may be given as
        TOML numbers too (``int``/``float``).
    symbols
        Every name the expression may use, mapped to its sympy symbol.

    Raises
    ------
    ExpressionError
        On a syntax error, an undeclared name, a call to a function outside
        :data:`FUNCTIONS`, or any construct that is not arithmetic.
    """
    if isinstance(text, bool):
        raise ExpressionError(f"expression must be a string or a number, got {text!r}")
    if isinstance(text, (int, float)):
        return sp.Float(text) if isinstance(text, float) else sp.Integer(text)
    if not isinstance(text, str):
        raise ExpressionError(f"expression must be a string or a number, got {text!r}")
    try:
        # "^" is a power here (NONMEM/mrgsolve habit); Python parses it as XOR with a lower
        # precedence than "*", so it is rewritten before parsing, not mapped afterwards
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error in {text!r}: {exc.msg} (column {exc.offset})") from None
    return _Walker(text, symbols).visit(tree.body)


class _Walker:
    def __init__(self, text: str, symbols: Mapping[str, sp.Symbol]):
        self.text = text
        self.symbols = symbols

    def visit(self, node: ast.AST):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"only numbers may appear as constants in {self.text!r}, got {node.value!r}")
            return sp.Integer(node.value) if isinstance(node.value, int) else sp.Float(node.value)
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.symbols[node.id]
            if node.id in FUNCTIONS:
                raise ExpressionError(f"function `{node.id}` used without a call in {self.text!r}", node.id)
            raise ExpressionError(f"undeclared symbol `{node.id}` in {self.text!r}", node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](self.visit(node.left), self.visit(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            val = self.visit(node.operand)
            return -val if isinstance(node.op, ast.USub) else val
        if isinstance(node, ast.Compare):
            parts = [self.visit(node.left)] + [self.visit(c) for c in node.comparators]
            rels = []
            for op, a, b in zip(node.ops, parts[:-1], parts[1:]):
                if type(op) not in _CMPOPS:
                    raise ExpressionError(f"comparison {type(op).__name__} is not allowed in {self.text!r}; use <, <=, >, >=")
                rels.append(_CMPOPS[type(op)](a, b))
            return sp.And(*rels) if len(rels) > 1 else rels[0]
        if isinstance(node, ast.BoolOp):
            vals = [self.visit(v) for v in node.values]
            return sp.And(*vals) if isinstance(node.op, ast.And) else sp.Or(*vals)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = getattr(node.func, "id", ast.unparse(node.func))
                raise ExpressionError(
                    f"function `{name}` is not allowed in {self.text!r}; allowed: {', '.join(sorted(FUNCTIONS))}",
                    name,
                )
            if node.keywords:
                raise ExpressionError(f"keyword arguments are not allowed in {self.text!r}")
            fname = node.func.id
            args = [self.visit(a) for a in node.args]
            arity = _ARITY.get(fname, 1)
            if arity is not None and len(args) != arity:
                raise ExpressionError(f"`{fname}` takes {arity} argument(s), got {len(args)} in {self.text!r}", fname)
            if arity is None and len(args) < 2:
                raise ExpressionError(f"`{fname}` takes at least 2 arguments, got {len(args)} in {self.text!r}", fname)
            return FUNCTIONS[fname](*args)
        raise ExpressionError(f"`{ast.unparse(node)}` is not allowed in a model expression ({self.text!r})")
