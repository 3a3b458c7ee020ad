"""A model file's claims, checked by simulation.

Parameter descriptions and source notes in a model file state behaviours of the model ("peak
~day 2-4 after one dose", "+25% at DILfrequency steady state"). A claims file,
``models/claims/<model>.toml`` beside the model files, writes each such statement as a check:

.. code-block:: toml

    [[claims]]
    id = "ka-apparent-half-life"
    about = "parameters.ka"                 # where the model file says it
    says = "flip-flop: apparent t1/2 3.3 h"  # the words checked
    source = "S34, S35"                      # BRIEF source ids of the number
    arms = { sc = "1.5 MIU sc once" }        # regimens (or { regimen = "...", params = {...} })
    check = "24*0.4167*log(2)/log(sc.at(conc, 0.4167)/sc.at(conc, 0.8333))"
    unit = "h"
    expect = [2.4, 4.2]                      # the claim holds inside this range
    horizon = 1.0                            # simulated time, model units (un-windowed metrics use all of it)
    dense_step = 0.0035                      # output step through dosing + 14 days (default 1)
    typical = "holds"                        # the verdict at the model file's values
    prior = "holds"                          # ... over prior draws (optional)
    posterior = "holds"                      # ... at the shipped posterior (optional)
    note = "..."                             # what was done where the claim fails

``check`` is arithmetic (``+ - * / **``, ``log exp sqrt abs min max``) over metric calls of the
sweep's language (:mod:`il2pkpd.design.metrics`) prefixed with an arm, ``arm.KIND(OUTPUT,
...)``. Every arm of a claim is simulated as a sweep cell for the typical subject (no
inter-individual variability) of each population draw: the model file's values (``typical``),
draws of its priors (``prior``, a prior-predictive check) or of a stored fit (``posterior``).

Verdicts. At typical values a claim **holds** when its value lies inside ``expect``, is
**contradicted** when it lies outside and **undefined** when it is not a number (a failed solve,
or a check undefined there). Over draws the share of all draws with a value inside ``expect``
decides (an undefined draw is not inside, and is counted): **holds** when at least half are,
**contradicted** when fewer than one in ten are, **uncertain** between. The recorded verdicts in the file are what the test suite asserts, so a
model or posterior change that flips one fails a test until the file (claim, note or model) is
mended.
"""

from __future__ import annotations

import ast
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelSpecError, OptionError

__all__ = ["Arm", "Claim", "claims_path", "load_claims", "check_claims", "VERDICTS"]

VERDICTS = ("holds", "uncertain", "contradicted")
#: over draws, a claim holds when at least half the draws lie inside its range
HOLDS_SHARE = 0.5
#: and is contradicted when fewer than one draw in ten do
CONTRADICTED_SHARE = 0.1
_KEYS = {"id", "about", "says", "source", "arms", "check", "unit", "expect", "horizon", "dense_step", "typical", "prior", "posterior", "note"}
_REQUIRED = ("id", "about", "says", "arms", "check", "expect", "horizon", "typical")
#: functions a check may call, besides metrics (NumPy, element-wise over draws)
_FUNCTIONS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "min": np.minimum, "max": np.maximum}
#: how many arguments each takes (NumPy ufuncs read a third as the output array: never pass one)
_ARITY = {"log": 1, "exp": 1, "sqrt": 1, "abs": 1, "min": 2, "max": 2}
_OPERATORS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}


@dataclass(frozen=True)
class Arm:
    """One simulated arm of a claim: a regimen (``None``: no dose) and parameter overrides."""

    key: str
    regimen: str | None
    params: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Claim:
    """A stated behaviour of a model and the simulation that checks it (module docstring)."""

    id: str
    about: str
    says: str
    source: str
    arms: tuple[Arm, ...]
    check: str
    unit: str
    expect: tuple[float, float]
    horizon: float
    dense_step: float
    typical: str
    posterior: str | None
    note: str
    calls: tuple[tuple[str, str, str], ...]  # (the call as written, its arm key, the normalised metric name)
    prior: str | None = None  # the recorded verdict over prior draws (a prior-predictive check)

    @property
    def metrics(self) -> tuple[tuple[str, str], ...]:
        """(arm key, normalised metric name) of every metric the check reads, once each."""
        return tuple(dict.fromkeys((arm, name) for _, arm, name in self.calls))

    def value(self, lookup) -> np.ndarray:
        """The check's value; ``lookup(arm_key, metric_name)`` gives that metric's values."""
        return _evaluate(ast.parse(self.check, mode="eval").body, lookup, {text: (arm, name) for text, arm, name in self.calls})

    def share_inside(self, values: np.ndarray) -> float:
        """The share of ``values`` that are numbers inside ``expect`` (a NaN is not inside)."""
        lo, hi = self.expect
        v = np.asarray(values, dtype=float).ravel()
        return float(np.mean(np.isfinite(v) & (v >= lo) & (v <= hi)))

    def verdict(self, values: np.ndarray) -> str:
        """For one value: ``holds`` inside ``expect``, ``contradicted`` outside, ``undefined``
        when it is not a number (a failed solve, or a check undefined there, such as the log
        of a negative excess). Over draws, by the share of all draws with a value inside
        ``expect`` (an undefined draw counts as not inside): ``holds`` from
        :data:`HOLDS_SHARE`, ``contradicted`` below :data:`CONTRADICTED_SHARE`, ``uncertain``
        between."""
        v = np.asarray(values, dtype=float).ravel()
        share = self.share_inside(v)
        if v.size == 1:
            return "undefined" if not np.isfinite(v[0]) else "holds" if share else "contradicted"
        return "holds" if share >= HOLDS_SHARE else "contradicted" if share < CONTRADICTED_SHARE else "uncertain"


def claims_path(model, model_file: str | Path | None = None) -> Path:
    """``claims/<model name>.toml`` beside the model file: ``model_file`` when the model was
    loaded from a path, else the file its name resolves to."""
    from .model_file import _resolve

    folder = Path(model_file).parent if model_file is not None else _resolve(model.name).parent
    return folder / "claims" / f"{model.name}.toml"


def load_claims(path: str | Path, model) -> list[Claim]:
    """Read and check a claims file against ``model`` (names, metrics, regimens, ranges).

    Raises
    ------
    ModelSpecError
        Naming the file, the claim and the key for anything that is not as the module
        docstring describes.
    """
    from ..design.metrics import parse_metric
    from ..dosing import parse_regimen

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelSpecError(f"{path}: cannot read the claims file ({exc})") from None
    entries = doc.get("claims")
    if not isinstance(entries, list) or not entries:
        raise ModelSpecError(f"{path}: needs a non-empty [[claims]] array of tables")
    params = set(model.parameter_names)
    out, seen = [], set()
    for i, e in enumerate(entries):
        where = f"{path}: claim {e.get('id', i + 1)!r}"
        unknown = set(e) - _KEYS
        if unknown:
            raise ModelSpecError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")
        missing = [k for k in _REQUIRED if k not in e]
        if missing:
            raise ModelSpecError(f"{where}: missing {missing}")
        if e["id"] in seen:
            raise ModelSpecError(f"{where}: the id is used twice")
        seen.add(e["id"])
        arms = []
        if not isinstance(e["arms"], dict) or not e["arms"]:
            raise ModelSpecError(f"{where}: `arms` must be a table of name = regimen, got {e['arms']!r}")
        for key, spec in e["arms"].items():
            spec = {"regimen": spec} if isinstance(spec, str) else spec
            if not isinstance(spec, dict) or set(spec) - {"regimen", "params"}:
                raise ModelSpecError(f"{where}: arm {key!r} must be a regimen or {{ regimen = ..., params = {{...}} }}, got {spec!r}")
            reg = spec.get("regimen", "none")
            reg = None if str(reg).strip().lower() == "none" else str(reg)
            if reg is not None:
                try:
                    parse_regimen(reg)
                except Exception as exc:  # the regimen parser's own message names what is wrong
                    raise ModelSpecError(f"{where}: arm {key!r}: {exc}") from None
            over = spec.get("params", {})
            bad = sorted(set(over) - params)
            if bad:
                raise ModelSpecError(f"{where}: arm {key!r} sets {bad}, not parameters of model {model.name!r}")
            arms.append(Arm(key, reg, tuple(sorted((k, float(v)) for k, v in over.items()))))
        expect = e["expect"]
        if not (isinstance(expect, list) and len(expect) == 2):
            raise ModelSpecError(f"{where}: `expect` must be [low, high] (use \"-inf\"/\"inf\" for one-sided), got {expect!r}")
        lo, hi = (float(x) for x in expect)
        if not lo < hi:
            raise ModelSpecError(f"{where}: `expect` must have low < high, got {expect!r}")
        horizon = float(e["horizon"])
        dense = float(e.get("dense_step", 1.0))
        if not (horizon > 0 and dense > 0):
            raise ModelSpecError(f"{where}: `horizon` and `dense_step` must be > 0 (model time units), got {horizon!r}, {dense!r}")
        for key, allowed in (("typical", ("holds", "contradicted")), ("prior", VERDICTS), ("posterior", VERDICTS)):
            if key in e and e[key] not in allowed:
                raise ModelSpecError(f"{where}: `{key}` must be one of {allowed}, got {e[key]!r}")
        try:
            tree = ast.parse(str(e["check"]), mode="eval").body
        except SyntaxError as exc:
            raise ModelSpecError(f"{where}: `check` is not an expression ({exc.msg})") from None
        keys = {a.key for a in arms}
        calls = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if not (isinstance(node.func.value, ast.Name) and node.func.value.id in keys):
                    raise ModelSpecError(f"{where}: `check` calls {ast.unparse(node.func)!r}; metrics are arm.KIND(...) with an arm of {sorted(keys)}")
                text = f"{node.func.attr}({', '.join(ast.unparse(a) for a in node.args)})"
                try:
                    m = parse_metric(text, model)
                except OptionError as exc:
                    raise ModelSpecError(f"{where}: {exc}") from None
                if any(t > horizon for t in m.times()):
                    raise ModelSpecError(f"{where}: {m.name} reads time {max(m.times()):g}, beyond the claim's horizon {horizon:g}")
                calls.append((ast.unparse(node), node.func.value.id, m.name))
        if not calls:
            raise ModelSpecError(f"{where}: `check` reads no metric")
        claim = Claim(str(e["id"]), str(e["about"]), str(e["says"]), str(e.get("source", "")), tuple(arms), str(e["check"]),
                      str(e.get("unit", "1")), (lo, hi), horizon, dense, e["typical"], e.get("posterior"), str(e.get("note", "")),
                      tuple(dict.fromkeys(calls)), e.get("prior"))
        try:
            with np.errstate(all="ignore"):  # every node is allowed (the dummy values themselves mean nothing)
                claim.value(lambda arm, name: np.ones(1))
        except ModelSpecError as exc:
            raise ModelSpecError(f"{where}: {exc}") from None
        out.append(claim)
    return out


def _evaluate(node, lookup, calls: dict):
    """The value of expression ``node``; ``calls`` maps each metric call, as written, to its
    (arm key, normalised metric name) for ``lookup``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return np.float64(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left, lookup, calls), _evaluate(node.right, lookup, calls))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _evaluate(node.operand, lookup, calls)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Call) and ast.unparse(node) in calls:
        return lookup(*calls[ast.unparse(node)])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords:
        if len(node.args) != _ARITY[node.func.id]:
            raise ModelSpecError(f"`check`: {node.func.id}() takes {_ARITY[node.func.id]} argument(s), got {len(node.args)} in {ast.unparse(node)!r}")
        return _FUNCTIONS[node.func.id](*(_evaluate(a, lookup, calls) for a in node.args))
    raise ModelSpecError(f"`check` may use numbers, + - * / **, {sorted(_FUNCTIONS)} and arm.METRIC(...) calls, not {ast.unparse(node)!r}")


def check_claims(model, claims: list[Claim], *, fit: str | Path | None = None, draws: int = 100, prior: int = 0, seed: int = 0,
                 rtol: float = 1e-6, atol: float = 1e-9, model_file: str | Path | None = None):
    """Evaluate ``claims`` at the model file's values and, when asked, over prior or posterior draws.

    Parameters
    ----------
    model
        The model the claims are about (by name in the sweeps: a model file on the search path).
    claims
        From :func:`load_claims`.
    fit
        Name or folder of a stored fit: its posterior draws give the ``posterior`` columns.
    draws
        Posterior draws used (evenly spaced).
    prior
        Prior draws for a prior-predictive check (0: none).
    seed
        Seed of the prior draws.
    rtol, atol
        Solver tolerances (Rodas4; tighter than a sweep's default because some claims read
        slopes of concentrations).
    model_file
        The file ``model`` was loaded from, when not the one its name resolves to. The sweeps
        simulate that file: a ``model`` that differs from it (changed in Python) is refused.

    Returns
    -------
    pandas.DataFrame
        One row per claim: id, about, says, source, unit, the expected range, the value at
        typical values and its verdict, and for each set of draws (``posterior_``,
        ``prior_``) the median, 90% interval, draws, undefined draws, share of draws inside
        the range and verdict, and the recorded verdicts.
    """
    import pandas as pd

    from ..design.sweep import hr_name
    from ..design.sweep_design import SweepDesign
    from ..model import model_hash
    from .entry import sweep
    from .model_file import load_model

    source = str(model_file) if model_file is not None else model.name
    if model_hash(load_model(source)) != model_hash(model):
        raise OptionError(f"check_claims simulates the model file {source!r}, and `model` differs from it (changed after loading?): "
                          "write the changed model to a file and pass `model_file`")
    modes = [("typical", None, False, 1)]
    if prior:
        modes.append(("prior", None, True, int(prior)))
    if fit is not None:
        modes.append(("posterior", str(fit), False, int(draws)))
    # one sweep per (arm parameters, horizon, grid step): every arm with the same overrides is a cell
    groups: dict[tuple, dict] = {}
    for c in claims:
        for a in c.arms:
            g = groups.setdefault((a.params, c.horizon, c.dense_step), {"regimens": {}, "metrics": {}})
            g["regimens"].setdefault(a.regimen, f"r{len(g['regimens'])}")
            for key, name in c.metrics:
                if key == a.key:
                    g["metrics"][name] = None
    results: dict[str, dict] = {m[0]: {} for m in modes}
    for (params, horizon, dense), g in groups.items():
        regimens = tuple((label, reg) for reg, label in g["regimens"].items())
        for mode, fit_name, use_prior, n in modes:
            design = SweepDesign(source, regimens, metrics=tuple(g["metrics"]), horizon=horizon, params=tuple((k, (v,)) for k, v in params),
                                 fit=fit_name, prior=use_prior, draws=n, seed=seed, dense_step=dense, grid_step=min(7.0, horizon),
                                 solver="rodas4", rtol=rtol, atol=atol)
            table = sweep(design).table
            by_regimen = {c.regimen: table[table["cell"] == c.index].sort_values("draw") for c in design.cells()}
            for reg in g["regimens"]:
                rows = by_regimen[reg]
                for name in g["metrics"]:
                    col = hr_name(name)  # a hazard ratio: the cumulative hazard over the untreated cell's, per draw
                    v = rows[col].to_numpy(dtype=float)
                    if col != name:
                        v = v / by_regimen[None][col].to_numpy(dtype=float)
                    results[mode][(params, horizon, dense, reg, name)] = v
    out = []
    for c in claims:
        row = {"id": c.id, "about": c.about, "says": c.says, "source": c.source, "unit": c.unit, "expect_low": c.expect[0], "expect_high": c.expect[1]}
        arm_of = {a.key: a for a in c.arms}
        for mode, *_ in modes:
            def lookup(key, name, mode=mode):
                a = arm_of[key]
                return results[mode][(a.params, c.horizon, c.dense_step, a.regimen, name)]
            with np.errstate(all="ignore"):
                v = np.asarray(c.value(lookup), dtype=float)
            if mode == "typical":
                row["typical_value"] = float(v.ravel()[0])
                row["typical_verdict"] = c.verdict(v)
                continue
            ok = np.isfinite(v)
            q = np.quantile(v[ok], [0.05, 0.5, 0.95]) if ok.any() else [math.nan] * 3
            row.update({f"{mode}_q5": q[0], f"{mode}_median": q[1], f"{mode}_q95": q[2], f"{mode}_draws": int(v.size),
                        f"{mode}_undefined": int((~ok).sum()), f"{mode}_share_inside": c.share_inside(v), f"{mode}_verdict": c.verdict(v)})
        row["recorded_typical"] = c.typical
        row["recorded_prior"] = c.prior
        row["recorded_posterior"] = c.posterior
        row["note"] = c.note
        out.append(row)
    return pd.DataFrame(out).set_index("id")
