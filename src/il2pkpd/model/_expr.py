"""Parse model expressions into sympy through a whitelist (never ``eval``).

The text is parsed by Python's :mod:`ast` (syntax only), and the tree is walked node by
node: numbers, declared names, arithmetic, comparisons and a fixed set of functions are
turned into sympy objects; anything else is refused with a message naming the offending
piece. ``^`` is accepted as a power, as in NONMEM and mrgsolve.

Limits (each refused with a one-line message, before any work that could hang):

* an expression has at most :data:`MAX_LENGTH` (10,000) characters and is nested at most
  :data:`MAX_DEPTH` (100) levels deep: each call, power, unary sign, comparison or operand
  of another operator is a level, while a run of ``+``/``-`` or of ``*``/``/`` counts once,
  so a sum of a thousand terms is one level (parentheses alone add none; Python's tokenizer
  allows 200 of them nested). Real model expressions are a few hundred characters and under
  20 levels; Python's own parser gives up at about 2,000 levels or terms in a row, which is
  refused with the same kind of message.
* constant parts (no symbol in them) are evaluated when the model is loaded and must be
  finite real numbers within the 64-bit float range (magnitude at most 1.8e308), since
  the compiled model computes in float64: ``10**10**10``, ``1/0``, ``log(0)``,
  ``sqrt(-1)``, ``exp(1000)`` are refused, naming the piece. A power of two constants is
  checked from logarithms *before* sympy computes it exactly (which for ``10**10**10``
  would not finish).
* conditions (comparisons, ``and``/``or``) may appear only as the first argument of
  ``if_else`` or inside ``and``/``or``; numbers may not appear where a condition is due.

Messages show an expression shortened to :data:`SHOWN` characters.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping

import mpmath
import sympy as sp
from sympy.logic.boolalg import Boolean

from ._special import SPECIAL

__all__ = ["ExpressionError", "parse_expression", "FUNCTIONS", "MAX_LENGTH", "MAX_DEPTH", "shorten"]

#: Longest expression accepted, in characters.
MAX_LENGTH = 10_000
#: Deepest nesting accepted (a run of +/- or of * and / counts as one level).
MAX_DEPTH = 100
#: Characters of an expression shown in a message.
SHOWN = 120
#: Largest magnitude of a constant (float64's largest finite number).
_FLOAT_MAX = 1.7976931348623157e308
_LOG10_MAX = math.log10(_FLOAT_MAX)


class ExpressionError(ValueError):
    """An expression is malformed or uses something outside the whitelist."""

    def __init__(self, message: str, symbol: str | None = None):
        super().__init__(message)
        self.symbol = symbol


def shorten(text: object, limit: int = SHOWN) -> str:
    """``repr`` of ``text`` (one line), cut to about ``limit`` characters with its full length."""
    s = str(text)
    if len(s) <= limit:
        return repr(s)
    return f"{s[: limit - 20]!r}...{s[-12:]!r} ({len(s):,} characters)"


def _if_else(cond, a, b):
    return sp.Piecewise((a, cond), (b, True))


def _expit(x):
    return 1 / (1 + sp.exp(-x))


def _logit(p):
    return sp.log(p / (1 - p))


def _power(a, b):
    """``a**b``, refusing a constant power outside float64 before sympy computes it exactly."""
    if a.is_number and b.is_number and not a.free_symbols and not b.free_symbols:
        av, bv = sp.N(a, 20), sp.N(b, 20)
        if av.is_real and bv.is_real and av != 0 and abs(av) != 1:
            mag = mpmath.mpf(bv._to_mpmath(80)) * mpmath.log10(abs(av._to_mpmath(80)))
            if abs(mag) > _LOG10_MAX:
                what = "above the largest" if mag > 0 else "below the smallest"
                raise _OutOfRange(f"{_cut(sp.sstr(a), 30)}**{_cut(sp.sstr(b), 30)} is about 10^{mpmath.nstr(mag, 3)}, {what} float64 number")
    return a**b


class _OutOfRange(ArithmeticError):
    pass


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
    "pow": _power,
    "tanh": sp.tanh,
    "expit": _expit,
    "logit": _logit,
    "if_else": _if_else,
} | {name: special.function for name, special in SPECIAL.items()}
_ARITY = {"min": None, "max": None, "pow": 2, "if_else": 3} | {name: special.function.nargs.args[0] for name, special in SPECIAL.items()}

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: _power,
}
#: runs of these are flattened: one nesting level, built without recursion
_CHAINS = {ast.Add: "add", ast.Sub: "add", ast.Mult: "mul", ast.Div: "mul"}
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
        :data:`FUNCTIONS`, any construct that is not arithmetic, an expression longer
        than :data:`MAX_LENGTH` or nested deeper than :data:`MAX_DEPTH`, or a constant
        part that is not a finite real float64 number. The message is one line.
    """
    if isinstance(text, bool):
        raise ExpressionError(f"expression must be a string or a number, got {text!r}")
    if isinstance(text, (int, float)):
        return _Walker(repr(text), symbols).constant(text)
    if not isinstance(text, str):
        raise ExpressionError(f"expression must be a string or a number, got {shorten(repr(text))}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression must have at most {MAX_LENGTH:,} characters, got {len(text):,} ({shorten(text, 60)}); "
            "split it into named [outputs]"
        )
    try:
        # "^" is a power here (NONMEM/mrgsolve habit); Python parses it as XOR with a lower
        # precedence than "*", so it is rewritten before parsing, not mapped afterwards
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        if "too many nested parentheses" in str(exc.msg):
            raise ExpressionError(
                f"expression has more than 200 nested parentheses, Python's limit ({shorten(text)}); keep within {MAX_DEPTH} levels "
                "and name intermediate results in [outputs]"
            ) from None
        msg = exc.msg or "invalid syntax"
        raise ExpressionError(f"syntax error in {shorten(text)}: {_cut(msg)} (column {exc.offset})") from None
    except (RecursionError, MemoryError):  # Python's parser: "too complex" (some 2,000 levels or terms)
        raise ExpressionError(
            f"expression is too complex for Python's parser, which stops at about 2,000 nested levels or terms in a row "
            f"({shorten(text)}); keep within {MAX_DEPTH} levels and name intermediate results in [outputs]"
        ) from None
    depth = _depth(tree.body)
    if depth > MAX_DEPTH:
        raise ExpressionError(f"expression must be nested at most {MAX_DEPTH} levels deep, got {depth} ({shorten(text)}); name intermediate results in [outputs]")
    return _finite(_Walker(text, symbols).number(tree.body), text)


def _finite(expr: sp.Expr, text: str) -> sp.Expr:
    """Refuse an expression holding a number outside float64 (a folded constant such as
    ``x + 1e308 + 1e308``), an infinity, NaN or the imaginary unit."""
    if expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
        raise ExpressionError(f"{shorten(text)} must not contain an infinite or undefined constant (division by zero, log(0) ...): got {_cut(sp.sstr(expr), 60)}")
    if expr.has(sp.I):
        raise ExpressionError(f"{shorten(text)} must be real, got {_cut(sp.sstr(expr), 60)} (a square root or power of a negative number?)")
    for n in expr.atoms(sp.Number):
        if abs(n) > _FLOAT_MAX:
            raise ExpressionError(f"{shorten(text)} has the constant {_cut(sp.sstr(sp.N(n, 4)), 30)} after folding, outside the 64-bit float range (magnitude <= 1.8e308)")
    return expr


def _depth(root: ast.AST) -> int:
    """Nesting depth of an expression tree (iterative: safe on any tree ast.parse returns).

    The left operand of ``+``/``-`` (``*``/``/``) under a node of the same kind continues a
    run and adds no level: ``a + b + c + d`` is one level whatever its length."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(root, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        fam = _CHAINS.get(type(node.op)) if isinstance(node, ast.BinOp) else None
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.expr_context)):
                continue
            same_run = fam is not None and child is node.left and isinstance(child, ast.BinOp) and _CHAINS.get(type(child.op)) == fam
            stack.append((child, d if same_run else d + 1))
    return deepest


class _Walker:
    def __init__(self, text: str, symbols: Mapping[str, sp.Symbol]):
        self.text = text
        self.symbols = symbols

    # -- typed visits ------------------------------------------------------------------
    def number(self, node: ast.AST) -> sp.Expr:
        """Visit a node that must give a number (not a condition)."""
        val = self.visit(node)
        if _is_condition(val):
            raise ExpressionError(
                f"`{_piece(node)}` is a condition where a number is needed in {shorten(self.text)}; "
                "use if_else(condition, value_if_true, value_if_false)"
            )
        return val

    def condition(self, node: ast.AST):
        """Visit a node that must give a condition (comparison, and/or)."""
        val = self.visit(node)
        if not _is_condition(val):
            raise ExpressionError(f"`{_piece(node)}` must be a condition (a comparison such as x > 0) in {shorten(self.text)}")
        return val

    def constant(self, value) -> sp.Expr:
        if isinstance(value, int) and abs(value) > _FLOAT_MAX:
            raise ExpressionError(f"constant {shorten(value, 40)} in {shorten(self.text)} must lie within the 64-bit float range (magnitude <= 1.8e308)")
        if isinstance(value, float) and not math.isfinite(value):
            raise ExpressionError(f"constant {value!r} in {shorten(self.text)} must be finite")
        return sp.Integer(value) if isinstance(value, int) else sp.Float(value)

    def checked(self, node: ast.AST, build: Callable[[], sp.Basic]) -> sp.Basic:
        """Build a sympy node; a constant result must be a finite real float64 number."""
        try:
            val = build()
        except _OutOfRange as exc:
            raise ExpressionError(f"`{_piece(node)}` in {shorten(self.text)} must be a number within the 64-bit float range: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ExpressionError(f"cannot evaluate `{_piece(node)}` in {shorten(self.text)}: {_cut(exc) or type(exc).__name__}") from None
        if isinstance(val, sp.Expr) and not val.free_symbols and val.is_number:
            v = sp.N(val, 20)
            if v.has(sp.zoo, sp.oo, -sp.oo, sp.nan) or not v.is_real:
                why = "is not a real number" if v.is_finite and not v.is_real else "is not finite (division by zero, log(0) ...)"
                raise ExpressionError(f"`{_piece(node)}` in {shorten(self.text)} {why}: it evaluates to {_cut(sp.sstr(v), 40)}")
            if abs(v) > _FLOAT_MAX:
                raise ExpressionError(f"`{_piece(node)}` in {shorten(self.text)} must lie within the 64-bit float range (magnitude <= 1.8e308), got about {_cut(mpmath.nstr(v._to_mpmath(60), 3), 30)}")
        return val

    # -- the tree ------------------------------------------------------------------------
    def visit(self, node: ast.AST):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"only numbers may appear as constants in {shorten(self.text)}, got {_cut(repr(node.value), 40)}")
            return self.constant(node.value)
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.symbols[node.id]
            if node.id in FUNCTIONS:
                raise ExpressionError(f"function `{node.id}` used without a call in {shorten(self.text)}", node.id)
            raise ExpressionError(f"undeclared symbol `{node.id}` in {shorten(self.text)}", node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _CHAINS:
            return self._run(node)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = self.number(node.left), self.number(node.right)
            return self.checked(node, lambda: _BINOPS[type(node.op)](a, b))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            val = self.number(node.operand)
            return -val if isinstance(node.op, ast.USub) else val
        if isinstance(node, ast.Compare):
            parts = [self.number(node.left)] + [self.number(c) for c in node.comparators]
            rels = []
            for op, a, b in zip(node.ops, parts[:-1], parts[1:]):
                if type(op) not in _CMPOPS:
                    raise ExpressionError(f"comparison {type(op).__name__} is not allowed in {shorten(self.text)}; use <, <=, >, >=")
                rels.append(self.checked(node, lambda op=op, a=a, b=b: _CMPOPS[type(op)](a, b)))
            return sp.And(*rels) if len(rels) > 1 else rels[0]
        if isinstance(node, ast.BoolOp):
            vals = [self.condition(v) for v in node.values]
            return sp.And(*vals) if isinstance(node.op, ast.And) else sp.Or(*vals)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = getattr(node.func, "id", None) or _piece(node.func)
                raise ExpressionError(
                    f"function `{name}` is not allowed in {shorten(self.text)}; allowed: {', '.join(sorted(FUNCTIONS))}",
                    name,
                )
            if node.keywords:
                raise ExpressionError(f"keyword arguments are not allowed in {shorten(self.text)}")
            fname = node.func.id
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise ExpressionError(f"`*` arguments are not allowed in {shorten(self.text)}", fname)
            arity = _ARITY.get(fname, 1)
            if arity is not None and len(node.args) != arity:
                raise ExpressionError(f"`{fname}` takes {arity} argument(s), got {len(node.args)} in {shorten(self.text)}", fname)
            if arity is None and len(node.args) < 2:
                raise ExpressionError(f"`{fname}` takes at least 2 arguments, got {len(node.args)} in {shorten(self.text)}", fname)
            if fname == "if_else":
                args = [self.condition(node.args[0]), self.number(node.args[1]), self.number(node.args[2])]
            else:
                args = [self.number(a) for a in node.args]
            return self.checked(node, lambda: FUNCTIONS[fname](*args))
        raise ExpressionError(f"`{_piece(node)}` is not allowed in a model expression ({shorten(self.text)})")

    def _run(self, node: ast.BinOp) -> sp.Expr:
        """A run ``a + b - c + ...`` (or ``a * b / c ...``): walk the left spine in a loop and
        build the sum (product) at once (the same expression as one operation at a time)."""
        fam = _CHAINS[type(node.op)]
        ops: list[tuple[type, ast.AST]] = []
        cur: ast.AST = node
        while isinstance(cur, ast.BinOp) and _CHAINS.get(type(cur.op)) == fam:
            ops.append((type(cur.op), cur.right))
            cur = cur.left
        parts = [self.number(cur)]
        for op, right in reversed(ops):
            val = self.number(right)
            parts.append(-val if op is ast.Sub else (1 / val if op is ast.Div else val))
        return self.checked(node, lambda: sp.Add(*parts) if fam == "add" else sp.Mul(*parts))


def _is_condition(val) -> bool:
    # a sympy Symbol is a Boolean too (it may stand for a truth value): conditions are the
    # Booleans that are not numbers (relations, And/Or, true/false)
    return isinstance(val, Boolean) and not isinstance(val, sp.Expr)


def _cut(text: object, limit: int = 80) -> str:
    """First line of ``text``, cut to ``limit`` characters (for messages)."""
    s = str(text).splitlines()[0] if str(text).strip() else ""
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _piece(node: ast.AST) -> str:
    """Source text of a node, shortened (for messages)."""
    try:
        s = ast.unparse(node)
    except (RecursionError, ValueError):
        s = type(node).__name__
    s = " ".join(s.split())
    return s if len(s) <= 60 else s[:45] + "..." + s[-10:]
