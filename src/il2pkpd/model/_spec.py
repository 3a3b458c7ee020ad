"""Model specification: immutable value objects, validated at construction.

A model is data: parameters, constants, covariates, states, ODEs, outputs, observations
and event hazards, each with a unit. :func:`build_model` turns a plain mapping (what a
``models/*.toml`` file holds) into a :class:`Model`, checking every name, expression and
unit; the first problem raises :class:`~il2pkpd.errors.ModelSpecError` naming the file,
the key (and line when known) and the symbol.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import sympy as sp

from ..errors import ModelSpecError
from ..units import Unit, UnitError, parse_unit
from ._dims import DimensionError, dimension_of, dims_equal, format_dims
from ._expr import FUNCTIONS, ExpressionError, parse_expression
from ._expr import shorten as _shorten

__all__ = [
    "ParamSpec",
    "IIVSpec",
    "ConstantSpec",
    "CovariateSpec",
    "StateSpec",
    "OutputSpec",
    "ErrorModelSpec",
    "ObservationSpec",
    "EventSpec",
    "Model",
    "build_model",
]

PRIORS: dict[str, tuple[str, ...]] = {
    "lognormal": ("median", "sigma"),
    "normal": ("mean", "sd"),
    "truncnormal": ("mean", "sd", "lower", "upper"),
    "halfnormal": ("sd",),
    "beta": ("mean", "sd"),
    "uniform": ("lower", "upper"),
}
IIV_KINDS = ("lognormal", "normal", "logit")
#: Residual error models and their parameters: the one table the likelihoods, the PyMC model
#: and the estimators read (exported as ``il2pkpd.model.ERROR_MODEL_PARAMETERS``).
ERROR_MODELS: dict[str, tuple[str, ...]] = {
    "additive": ("add",),
    "proportional": ("prop",),
    "combined": ("add", "prop"),
    "lognormal": ("sigma",),
}


def residual_parameter_name(observation: str, key: str, n_keys: int) -> str:
    """The name a fit gives a residual error parameter: ``sigma_<observation>`` when its error
    model has one parameter (``n_keys == 1``), ``sigma_<observation>_<key>`` otherwise."""
    return f"sigma_{observation}" if n_keys == 1 else f"sigma_{observation}_{key}"


_RESERVED = {"t", "time", "pi", "E", "I", "inf", "nan"} | set(FUNCTIONS)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SOURCE = re.compile(r"^[SL]\d{1,3}$")  # BRIEF ids S1..S112; L1.. are docs/sources.md (this project's)


@dataclass(frozen=True)
class IIVSpec:
    """Inter-individual variability of one parameter.

    ``kind`` is ``lognormal`` (theta_i = theta * exp(eta)), ``normal`` (theta + eta) or
    ``logit`` (expit(logit(theta) + eta)); eta ~ N(0, omega^2).
    """

    kind: str
    omega: float


@dataclass(frozen=True)
class ParamSpec:
    """A model parameter: one declarative line of value, unit, bounds, prior, IIV, source."""

    name: str
    value: float
    unit: str
    lower: float = -math.inf
    upper: float = math.inf
    prior: Mapping[str, Any] | None = None
    iiv: IIVSpec | None = None
    label: str = ""
    description: str = ""
    source: str = ""
    fixed: bool = False


@dataclass(frozen=True)
class ConstantSpec:
    """A fixed number with a unit (e.g. a drug's nmol per MIU); never estimated."""

    name: str
    value: float
    unit: str
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class CovariateSpec:
    """A subject-level input (weight, BSA, baseline TBR ...) read from the dataset."""

    name: str
    value: float
    unit: str
    label: str = ""
    description: str = ""


@dataclass(frozen=True)
class StateSpec:
    """A compartment. Dose-able states carry NONMEM-style F, ALAG, R and D expressions."""

    name: str
    unit: str
    initial: str = "0"
    dose: bool = False
    cmt: int = 0
    bioavailability: str = "1"
    lag: str = "0"
    rate: str = "0"
    duration: str = "0"
    description: str = ""


@dataclass(frozen=True)
class OutputSpec:
    """A derived quantity (concentration, fold change, TBR, hazard ...)."""

    name: str
    expr: str
    unit: str
    description: str = ""


@dataclass(frozen=True)
class ErrorModelSpec:
    """Residual error model of an observation: additive, proportional, combined, lognormal."""

    model: str
    add: float = 0.0
    prop: float = 0.0
    sigma: float = 0.0


@dataclass(frozen=True)
class ObservationSpec:
    """Maps a data type (DVID) to an output and its residual error model."""

    name: str
    output: str
    dvid: int
    error: ErrorModelSpec
    lloq: float | None = None
    description: str = ""
    paramcd: str = ""


@dataclass(frozen=True)
class EventSpec:
    """A time-to-event endpoint: its hazard is integrated as state ``cumhaz_<name>``."""

    name: str
    hazard: str
    description: str = ""


@dataclass(frozen=True, eq=False)
class Model:
    """An immutable, validated model. Build it with :func:`build_model` or
    :func:`il2pkpd.load_model`.

    The symbolic form (sympy expressions converted to the declared units) is in
    :attr:`symbolic`; the JAX functions are in :attr:`compiled`.
    """

    name: str
    time_unit: str
    parameters: tuple[ParamSpec, ...]
    states: tuple[StateSpec, ...]
    odes: Mapping[str, str]
    outputs: tuple[OutputSpec, ...] = ()
    constants: tuple[ConstantSpec, ...] = ()
    covariates: tuple[CovariateSpec, ...] = ()
    observations: tuple[ObservationSpec, ...] = ()
    events: tuple[EventSpec, ...] = ()
    description: str = ""
    drug: str = ""
    source_file: str = ""
    source_text: str = field(default="", repr=False)

    # -- names and lookups ------------------------------------------------------------
    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.covariates)

    def index(self, state: str) -> int:
        """Position of a state in the state vector."""
        try:
            return self.state_names.index(state)
        except ValueError:
            raise ModelSpecError(
                f"`state` must be one of {list(self.state_names)}, got {state!r} (model {self.name!r})"
            ) from None

    def parameter(self, name: str) -> ParamSpec:
        """Look a parameter up by name or NONMEM label (case-insensitive)."""
        key = name.lower()
        for p in self.parameters:
            if p.name.lower() == key:
                return p
        for p in self.parameters:
            if p.label and p.label.lower() == key:
                return p
        raise ModelSpecError(
            f"`parameter` must be one of {list(self.parameter_names)} (or their labels), "
            f"got {name!r} (model {self.name!r})"
        )

    def state_for_cmt(self, cmt: int) -> int:
        """State index of NONMEM compartment number ``cmt``."""
        for i, s in enumerate(self.states):
            if s.cmt == cmt:
                return i
        raise ModelSpecError(
            f"`CMT` must be one of {[s.cmt for s in self.states]} for model {self.name!r}, got {cmt!r}"
        )

    def observation_for_dvid(self, dvid: int) -> ObservationSpec:
        for o in self.observations:
            if o.dvid == dvid:
                return o
        raise ModelSpecError(
            f"`DVID` must be one of {[o.dvid for o in self.observations]} for model {self.name!r}, got {dvid!r}"
        )

    def output_unit(self, name: str) -> str:
        for o in self.outputs:
            if o.name == name:
                return o.unit
        raise ModelSpecError(f"`output` must be one of {list(self.output_names)}, got {name!r}")

    @property
    def typical_values(self) -> dict[str, float]:
        """Parameter typical values in their declared units."""
        return {p.name: p.value for p in self.parameters}

    def replace(self, **changes: Any) -> Model:
        """A new model with some fields changed (validated again)."""
        return _validated(replace(self, **changes))

    def with_values(self, **values: float) -> Model:
        """A new model whose parameter typical values are changed (names or labels)."""
        new = {p.name: p for p in self.parameters}
        for key, val in values.items():
            p = self.parameter(key)
            new[p.name] = replace(p, value=float(val))
        return self.replace(parameters=tuple(new[p.name] for p in self.parameters))

    def estimate_only(self, *names: str) -> Model:
        """A new model in which every parameter except ``names`` (names or labels) is
        ``fixed`` at its value: fits then estimate only those (and their IIV)."""
        keep = {self.parameter(n).name for n in names}
        return self.replace(parameters=tuple(replace(p, fixed=p.name not in keep) for p in self.parameters))

    @cached_property
    def symbolic(self) -> SymbolicModel:
        return SymbolicModel(self)

    @cached_property
    def compiled(self):
        from ._compile import compile_model

        return compile_model(self)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython / Hypothesis pretty-printers
        printer.text(repr(self))

    def __repr__(self) -> str:
        return (
            f"Model({self.name!r}, {len(self.parameters)} parameters, "
            f"{len(self.states)} states, {len(self.outputs)} outputs, time in {self.time_unit})"
        )


# --------------------------------------------------------------------------------------
# error locations
# --------------------------------------------------------------------------------------


def _cut(text: object, limit: int) -> str:
    """``str(text)`` on one line, cut to ``limit`` characters (for messages)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else f"{s[: limit - 30]} ... {s[-20:]} ({len(s):,} characters)"


def _line_of(text: str, path: tuple[str, ...]) -> int | None:
    """Best-effort line number of a TOML key path such as ('odes', 'central')."""
    if not text:
        return None
    lines = text.splitlines()
    section, key = path[0], path[1] if len(path) > 1 else None
    in_section = False
    for i, line in enumerate(lines, start=1):
        s = line.strip()
        if s.startswith("["):
            header = s.strip("[]").strip()
            in_section = header == section or header.startswith(section + ".")
            if key is not None and header == f"{section}.{key}":
                return i
            if key is None and header == section:
                return i
            continue
        if in_section and key is not None and re.match(rf"^{re.escape(key)}\s*=", s):
            return i
    return None


class _Where:
    def __init__(self, source_file: str, source_text: str):
        self.file = source_file
        self.text = source_text

    def __call__(self, *path: str) -> str:
        # a key that is not a plain name (TOML allows any quoted key) is shown quoted, on one line
        key = ".".join(k if _NAME.match(str(k)) else _shorten(k, 40) for k in path)
        loc = f"`{key}`"
        line = _line_of(self.text, path)
        if line is not None:
            loc += f" (line {line})"
        return f"{self.file}: {loc}" if self.file else loc


# --------------------------------------------------------------------------------------
# building from a mapping
# --------------------------------------------------------------------------------------


def _require(table: Mapping, key: str, where: str, kind: type | tuple = object):
    if key not in table:
        raise ModelSpecError(f"{where}: missing required field `{key}`")
    val = table[key]
    if kind is not object and (not isinstance(val, kind) or isinstance(val, bool) and kind is not bool):
        raise ModelSpecError(f"{where}: `{key}` must be {_kind_name(kind)}, got {val!r}")
    return val


def _kind_name(kind) -> str:
    if kind == (int, float) or kind == (float, int):
        return "a number"
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return {"str": "a string", "bool": "true or false", "int": "an integer", "dict": "a table"}.get(
        kind.__name__, kind.__name__
    )


def _check_keys(table: Mapping, allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ModelSpecError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _num(table: Mapping, key: str, where: str, default: float | None = None) -> float:
    if key not in table:
        if default is None:
            raise ModelSpecError(f"{where}: missing required field `{key}`")
        return default
    val = table[key]
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise ModelSpecError(f"{where}: `{key}` must be a number, got {val!r}")
    return float(val)


def _str(table: Mapping, key: str, where: str, default: str | None = None) -> str:
    if key not in table:
        if default is None:
            raise ModelSpecError(f"{where}: missing required field `{key}`")
        return default
    val = table[key]
    if not isinstance(val, str):
        raise ModelSpecError(f"{where}: `{key}` must be a string, got {val!r}")
    return val


def _expr_text(table: Mapping, key: str, where: str, default: str) -> str:
    val = table.get(key, default)
    if isinstance(val, bool) or not isinstance(val, (str, int, float)):
        raise ModelSpecError(f"{where}: `{key}` must be an expression (string or number), got {val!r}")
    return str(val)


def _unit(table: Mapping, where: str) -> str:
    text = _str(table, "unit", where)
    _parse_unit(text, where)
    return text


def _parse_unit(text: str, where: str) -> Unit:
    """``parse_unit`` at the model-file boundary: a unit whose arithmetic fails ('mg/0',
    'kg^1e10', deeply nested parentheses) or whose scale is not a positive finite number
    ('1e400 mg', '0 mg') is a ModelSpecError naming the key, not a crash or a silent inf."""
    try:
        unit = parse_unit(text)
    except UnitError as exc:
        raise ModelSpecError(f"{where}: {exc}") from None
    except (ArithmeticError, RecursionError) as exc:
        raise ModelSpecError(f"{where}: `unit` {_shorten(text, 60)} cannot be used: {_cut(exc, 80)}") from None
    if not (math.isfinite(unit.scale) and unit.scale > 0):
        raise ModelSpecError(f"{where}: `unit` {_shorten(text, 60)} must have a positive finite scale, got {unit.scale!r}")
    return unit


def _section(data: Mapping, name: str, where: _Where) -> Mapping:
    sec = data.get(name, {})
    if not isinstance(sec, Mapping):
        raise ModelSpecError(f"{where(name)}: must be a table, got {sec!r}")
    return sec


def _entries(data: Mapping, name: str, where: _Where):
    for key, table in _section(data, name, where).items():
        w = where(name, key)
        if not isinstance(table, Mapping):
            raise ModelSpecError(f"{w}: must be a table (e.g. [{name}.{key}]), got {table!r}")
        yield key, table, w


def build_model(data: Mapping[str, Any], *, source_file: str = "", source_text: str = "") -> Model:
    """Build and validate a :class:`Model` from a mapping (the contents of a model file).

    Parameters
    ----------
    data
        Sections ``model``, ``parameters``, ``constants``, ``covariates``, ``states``,
        ``odes``, ``outputs``, ``observations``, ``events`` (see ``models/README.md``).
    source_file, source_text
        Where the mapping came from, for error messages.

    Raises
    ------
    ModelSpecError
        Naming the file, the key (and line) and the offending symbol or value.
    """
    where = _Where(source_file, source_text)
    if not isinstance(data, Mapping):
        raise ModelSpecError(f"{source_file or 'model'}: a model must be a table, got {type(data).__name__}")
    _check_keys(
        data,
        {"model", "parameters", "constants", "covariates", "states", "odes", "outputs", "observations", "events"},
        source_file or "model",
    )
    header = _section(data, "model", where)
    _check_keys(header, {"name", "description", "time_unit", "drug"}, where("model"))
    name = _str(header, "name", where("model"))
    time_unit = _str(header, "time_unit", where("model"))
    tu = _parse_unit(time_unit, where("model", "time_unit"))
    if tu.dims != parse_unit("h").dims:
        raise ModelSpecError(f"{where('model', 'time_unit')}: must be a unit of time, got {time_unit!r}")

    params = []
    for key, t, w in _entries(data, "parameters", where):
        _check_keys(t, {"value", "unit", "lower", "upper", "prior", "iiv", "label", "description", "source", "fixed"}, w)
        prior = t.get("prior")
        if prior is not None:
            prior = _prior(prior, w)
        iiv = t.get("iiv")
        if iiv is not None:
            iiv = _iiv(iiv, w)
        fixed = t.get("fixed", False)
        if not isinstance(fixed, bool):
            raise ModelSpecError(f"{w}: `fixed` must be true or false, got {fixed!r}")
        params.append(
            ParamSpec(
                name=key,
                value=_num(t, "value", w),
                unit=_unit(t, w),
                lower=_num(t, "lower", w, -math.inf),
                upper=_num(t, "upper", w, math.inf),
                prior=prior,
                iiv=iiv,
                label=_str(t, "label", w, ""),
                description=_str(t, "description", w, ""),
                source=_source(t, w),
                fixed=fixed,
            )
        )
    constants = []
    for key, t, w in _entries(data, "constants", where):
        _check_keys(t, {"value", "unit", "description", "source"}, w)
        constants.append(
            ConstantSpec(key, _num(t, "value", w), _unit(t, w), _str(t, "description", w, ""), _source(t, w))
        )
    covariates = []
    for key, t, w in _entries(data, "covariates", where):
        _check_keys(t, {"value", "unit", "label", "description"}, w)
        covariates.append(
            CovariateSpec(key, _num(t, "value", w), _unit(t, w), _str(t, "label", w, ""), _str(t, "description", w, ""))
        )
    states = []
    for i, (key, t, w) in enumerate(_entries(data, "states", where)):
        _check_keys(t, {"unit", "initial", "dose", "cmt", "bioavailability", "lag", "rate", "duration", "description"}, w)
        dose = t.get("dose", False)
        if not isinstance(dose, bool):
            raise ModelSpecError(f"{w}: `dose` must be true or false, got {dose!r}")
        cmt = t.get("cmt", i + 1)
        if isinstance(cmt, bool) or not isinstance(cmt, int) or cmt < 1:
            raise ModelSpecError(f"{w}: `cmt` must be an integer >= 1, got {cmt!r}")
        dose_keys = {"bioavailability", "lag", "rate", "duration"} & set(t)
        if dose_keys and not dose:
            raise ModelSpecError(f"{w}: {sorted(dose_keys)} given but the state does not accept doses (`dose = true`)")
        states.append(
            StateSpec(
                name=key,
                unit=_unit(t, w),
                initial=_expr_text(t, "initial", w, "0"),
                dose=dose,
                cmt=cmt,
                bioavailability=_expr_text(t, "bioavailability", w, "1"),
                lag=_expr_text(t, "lag", w, "0"),
                rate=_expr_text(t, "rate", w, "0"),
                duration=_expr_text(t, "duration", w, "0"),
                description=_str(t, "description", w, ""),
            )
        )
    odes_sec = _section(data, "odes", where)
    odes = {}
    for key, val in odes_sec.items():
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise ModelSpecError(f"{where('odes', key)}: must be an expression string, got {val!r}")
        odes[key] = str(val)
    outputs = []
    for key, t, w in _entries(data, "outputs", where):
        _check_keys(t, {"expr", "unit", "description"}, w)
        outputs.append(OutputSpec(key, _expr_text(t, "expr", w, ""), _unit(t, w), _str(t, "description", w, "")))
    observations = []
    for key, t, w in _entries(data, "observations", where):
        _check_keys(t, {"output", "dvid", "error", "lloq", "description", "paramcd"}, w)
        dvid = _require(t, "dvid", w, int)
        err = _require(t, "error", w, dict)
        observations.append(
            ObservationSpec(
                name=key,
                output=_str(t, "output", w),
                dvid=dvid,
                error=_error_model(err, w),
                lloq=_num(t, "lloq", w, math.nan) if "lloq" in t else None,
                description=_str(t, "description", w, ""),
                paramcd=_str(t, "paramcd", w, key.upper()[:8]),
            )
        )
    events = []
    for key, t, w in _entries(data, "events", where):
        _check_keys(t, {"hazard", "description"}, w)
        events.append(EventSpec(key, _expr_text(t, "hazard", w, ""), _str(t, "description", w, "")))

    model = Model(
        name=name,
        time_unit=time_unit,
        parameters=tuple(params),
        states=tuple(states),
        odes=odes,
        outputs=tuple(outputs),
        constants=tuple(constants),
        covariates=tuple(covariates),
        observations=tuple(observations),
        events=tuple(events),
        description=_str(header, "description", where("model"), ""),
        drug=_str(header, "drug", where("model"), ""),
        source_file=source_file,
        source_text=source_text,
    )
    return _validated(model)


def _source(t: Mapping, w: str) -> str:
    src = t.get("source", "")
    if isinstance(src, list):
        src = ", ".join(str(s) for s in src)
    if not isinstance(src, str):
        raise ModelSpecError(f"{w}: `source` must be a BRIEF source id such as 'S35' (or L1.. of docs/sources.md), got {src!r}")
    for part in filter(None, (s.strip() for s in src.split(","))):
        if not _SOURCE.match(part) and part not in ("I", "conformance", "NONMEM"):
            raise ModelSpecError(
                f"{w}: `source` entries must be BRIEF source ids (S1..S112), docs/sources.md ids (L1..), 'I' (inferred) or "
                f"'conformance', got {part!r}"
            )
    return src


def _prior(prior: Any, w: str) -> dict:
    if not isinstance(prior, Mapping):
        raise ModelSpecError(f"{w}: `prior` must be a table such as {{dist = \"lognormal\", median = 1, sigma = 0.5}}, got {prior!r}")
    dist = prior.get("dist")
    if dist not in PRIORS:
        raise ModelSpecError(f"{w}: `prior.dist` must be one of {sorted(PRIORS)}, got {dist!r}")
    need = set(PRIORS[dist])
    have = set(prior) - {"dist"}
    if have != need:
        raise ModelSpecError(f"{w}: a {dist} prior needs exactly {sorted(need)}, got {sorted(have)}")
    out = {"dist": dist}
    for k in sorted(need):  # a set: sorted so that the spec (and its hash) is the same in every process
        v = prior[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ModelSpecError(f"{w}: `prior.{k}` must be a number, got {v!r}")
        out[k] = float(v)
    for k in ("sigma", "sd"):
        if k in out and not out[k] > 0:
            raise ModelSpecError(f"{w}: `prior.{k}` must be > 0, got {out[k]!r}")
    if dist == "lognormal" and not out["median"] > 0:
        raise ModelSpecError(f"{w}: `prior.median` of a lognormal must be > 0, got {out['median']!r}")
    if dist == "beta":
        m, s = out["mean"], out["sd"]
        if not (0 < m < 1 and s * s < m * (1 - m)):
            raise ModelSpecError(f"{w}: a beta prior needs 0 < mean < 1 and sd^2 < mean*(1-mean), got mean={m!r}, sd={s!r}")
    if dist in ("uniform", "truncnormal") and not out["lower"] < out["upper"]:
        raise ModelSpecError(f"{w}: `prior.lower` must be < `prior.upper`, got {out['lower']!r} >= {out['upper']!r}")
    return out


def _iiv(iiv: Any, w: str) -> IIVSpec:
    if not isinstance(iiv, Mapping):
        raise ModelSpecError(f"{w}: `iiv` must be a table such as {{kind = \"lognormal\", omega = 0.3}}, got {iiv!r}")
    _check_keys(iiv, {"kind", "omega"}, w + " iiv")
    kind = iiv.get("kind", "lognormal")
    if kind not in IIV_KINDS:
        raise ModelSpecError(f"{w}: `iiv.kind` must be one of {list(IIV_KINDS)}, got {kind!r}")
    omega = _num(iiv, "omega", w + " iiv")
    if not omega >= 0:
        raise ModelSpecError(f"{w}: `iiv.omega` must be >= 0, got {omega!r}")
    return IIVSpec(kind, omega)


def _error_model(err: Mapping, w: str) -> ErrorModelSpec:
    model = err.get("model")
    if model not in ERROR_MODELS:
        raise ModelSpecError(f"{w}: `error.model` must be one of {sorted(ERROR_MODELS)}, got {model!r}")
    need = set(ERROR_MODELS[model])
    have = set(err) - {"model"}
    if have != need:
        raise ModelSpecError(f"{w}: a {model} error model needs exactly {sorted(need)}, got {sorted(have)}")
    vals = {}
    for k in need:
        v = _num(err, k, w + " error")
        if not v >= 0:
            raise ModelSpecError(f"{w}: `error.{k}` must be >= 0, got {v!r}")
        vals[k] = v
    return ErrorModelSpec(model, **vals)


# --------------------------------------------------------------------------------------
# semantic validation and the symbolic form
# --------------------------------------------------------------------------------------


def _validated(model: Model) -> Model:
    # building the symbolic form is the validation (it raises on any problem); keep it, so
    # that `model.symbolic` does not parse and check everything a second time
    model.__dict__["symbolic"] = SymbolicModel(model)
    return model


@dataclass
class _Quantity:
    symbol: sp.Symbol
    unit: Unit
    kind: str  # parameter, constant, covariate, state, output, time


class SymbolicModel:
    """The model as sympy expressions, checked for names, cycles and dimensions.

    All expressions here take symbols in their *declared* units and return values in
    the declared unit of their target (conversion factors folded in).

    Attributes
    ----------
    rhs
        d(state)/dt per state (declared state unit per model time unit).
    outputs
        Output expressions (declared output units), over t, states, parameters, covariates.
    initial
        Initial state expressions (over parameters and covariates).
    dose
        Per state: (bioavailability, lag, rate, duration) expressions.
    """

    def __init__(self, model: Model):
        where = _Where(model.source_file, model.source_text)
        self.model = model
        tu = parse_unit(model.time_unit)
        q: dict[str, _Quantity] = {}

        def declare(name: str, unit: str, kind: str, w: str) -> None:
            if not _NAME.match(name) or keyword.iskeyword(name):
                raise ModelSpecError(f"{w}: {_shorten(name, 40)} is not a valid name (letters, digits, _; not starting with a digit)")
            if name in _RESERVED:
                raise ModelSpecError(f"{w}: `{name}` is reserved (time `t`, functions and constants); choose another name")
            if name in q:
                raise ModelSpecError(f"{w}: duplicate name `{name}` (already declared as a {q[name].kind})")
            q[name] = _Quantity(sp.Symbol(name, real=True), parse_unit(unit), kind)

        for p in model.parameters:
            w = where("parameters", p.name)
            declare(p.name, p.unit, "parameter", w)
            if not p.lower <= p.value <= p.upper:
                raise ModelSpecError(f"{w}: `value` must lie within [lower, upper] = [{p.lower}, {p.upper}], got {p.value!r} {p.unit}")
            if not math.isfinite(p.value):
                raise ModelSpecError(f"{w}: `value` must be finite, got {p.value!r}")
            if p.iiv is not None and p.iiv.kind == "lognormal" and p.value <= 0:
                raise ModelSpecError(f"{w}: lognormal IIV needs a positive typical value, got {p.value!r}")
            if p.iiv is not None and p.iiv.kind == "logit" and not 0 < p.value < 1:
                raise ModelSpecError(f"{w}: logit IIV needs a typical value in (0, 1), got {p.value!r}")
        labels: dict[str, str] = {}
        lower_names = {p.name.lower(): p.name for p in model.parameters} | {c.name.lower(): c.name for c in model.covariates}
        for spec, section in [(p, "parameters") for p in model.parameters] + [(c, "covariates") for c in model.covariates]:
            lab = spec.label.lower()
            if not lab:
                continue
            if lab in lower_names and lower_names[lab] != spec.name:
                raise ModelSpecError(f"{where(section, spec.name)}: `label` {spec.label!r} is the name of another parameter or covariate (`{lower_names[lab]}`); labels must be unambiguous")
            if lab in labels:
                raise ModelSpecError(f"{where(section, spec.name)}: `label` {spec.label!r} is already used by `{labels[lab]}`")
            labels[lab] = spec.name
        for c in model.constants:
            declare(c.name, c.unit, "constant", where("constants", c.name))
            if not math.isfinite(c.value):
                raise ModelSpecError(f"{where('constants', c.name)}: `value` must be finite, got {c.value!r}")
        for c in model.covariates:
            declare(c.name, c.unit, "covariate", where("covariates", c.name))
            if not math.isfinite(c.value):
                raise ModelSpecError(f"{where('covariates', c.name)}: `value` must be finite, got {c.value!r}")
        cmts: dict[int, str] = {}
        for s in model.states:
            w = where("states", s.name)
            declare(s.name, s.unit, "state", w)
            if s.cmt in cmts:
                raise ModelSpecError(f"{w}: `cmt` {s.cmt} is already used by state `{cmts[s.cmt]}`")
            cmts[s.cmt] = s.name
        event_states = []
        for e in model.events:
            w = where("events", e.name)
            for derived in (f"cumhaz_{e.name}", f"surv_{e.name}", f"hazard_{e.name}"):
                if derived in q:
                    raise ModelSpecError(f"{w}: the event's derived name `{derived}` is already declared")
            declare(f"cumhaz_{e.name}", "1", "state", w)
            event_states.append(f"cumhaz_{e.name}")
        for o in model.outputs:
            declare(o.name, o.unit, "output", where("outputs", o.name))
        for e in model.events:
            declare(f"hazard_{e.name}", f"1/{model.time_unit}", "output", where("events", e.name))
            declare(f"surv_{e.name}", "1", "output", where("events", e.name))
        if not model.states and not model.events:
            raise ModelSpecError(f"{model.source_file or model.name}: a model needs at least one state in [states] or an event in [events]")

        t = sp.Symbol("t", real=True)
        symbols = {name: qq.symbol for name, qq in q.items()}
        symbols["t"] = t
        dims = {qq.symbol: tuple(sp.Integer(x.numerator) / x.denominator for x in qq.unit.dims) for qq in q.values()}
        dims[t] = tuple(sp.Integer(x.numerator) / x.denominator for x in tu.dims)
        self._dims = dims

        def parse(text: str, w: str) -> sp.Expr:
            try:
                return parse_expression(text, symbols)
            except ExpressionError as exc:
                raise ModelSpecError(f"{w}: {exc}") from None

        def check_dims(expr: sp.Expr, unit: Unit, w: str, what: str) -> None:
            try:
                d = dimension_of(expr, dims)
            except DimensionError as exc:
                raise ModelSpecError(f"{w}: unit clash: {_cut(exc, 400)}") from None
            target = tuple(sp.Integer(x.numerator) / x.denominator for x in unit.dims)
            if not dims_equal(d, target):
                raise ModelSpecError(
                    f"{w}: unit clash: {what} must have dimension {format_dims(target)} "
                    f"({unit.text}), but `{_cut(expr, 120)}` has {format_dims(d)}"
                )

        # -- outputs (may reference one another; must be acyclic) ------------------------
        raw_out: dict[str, sp.Expr] = {}
        for o in model.outputs:
            w = where("outputs", o.name)
            if not o.expr.strip():
                raise ModelSpecError(f"{w}: missing required field `expr`")
            e = parse(o.expr, w)
            check_dims(e, q[o.name].unit, w, f"output `{o.name}`")
            raw_out[o.name] = e
        hazards: dict[str, sp.Expr] = {}
        for ev in model.events:
            w = where("events", ev.name)
            if not ev.hazard.strip():
                raise ModelSpecError(f"{w}: missing required field `hazard`")
            e = parse(ev.hazard, w)
            check_dims(e, q[f"hazard_{ev.name}"].unit, w, f"the hazard of event `{ev.name}`")
            hazards[ev.name] = e
            raw_out[f"hazard_{ev.name}"] = e
            raw_out[f"surv_{ev.name}"] = sp.exp(-symbols[f"cumhaz_{ev.name}"])
        out_syms = {q[n].symbol: n for n in raw_out}
        order = _topological(raw_out, out_syms, where)
        inlined: dict[sp.Symbol, sp.Expr] = {}
        for name in order:
            inlined[q[name].symbol] = raw_out[name].xreplace(inlined)

        # -- scale factors: declared value * factor = coherent value --------------------
        factor = {qq.symbol: qq.unit.factor_in(tu) for qq in q.values()}
        base_subs = {}
        for name, qq in q.items():
            if qq.kind == "constant":
                spec = next(c for c in model.constants if c.name == name)
                base_subs[qq.symbol] = sp.Float(spec.value * factor[qq.symbol])
            elif qq.kind in ("parameter", "covariate", "state") and factor[qq.symbol] != 1.0:
                base_subs[qq.symbol] = sp.Float(factor[qq.symbol]) * qq.symbol

        def to_declared(raw: sp.Expr, target_factor: float) -> sp.Expr:
            e = raw.xreplace(inlined).xreplace(base_subs)
            if target_factor != 1.0:
                e = e / sp.Float(target_factor)
            return e

        # -- ODEs -------------------------------------------------------------------------
        state_names = [s.name for s in model.states]
        for key in model.odes:
            if key not in q or q[key].kind != "state":
                raise ModelSpecError(f"{where('odes', key)}: `{key}` is not a declared state; declared: {state_names}")
            if key in event_states:
                raise ModelSpecError(f"{where('odes', key)}: `{key}` is integrated from its event hazard; do not give an ODE")
        self.state_names = tuple(state_names + event_states)
        self.rhs: list[sp.Expr] = []
        for s in model.states:
            w = where("odes", s.name)
            if s.name not in model.odes:
                raise ModelSpecError(f"{where('odes')}: missing ODE for state `{s.name}`")
            e = parse(model.odes[s.name], w)
            unit = q[s.name].unit / tu
            check_dims(e, unit, w, f"d({s.name})/dt")
            self.rhs.append(to_declared(e, factor[q[s.name].symbol]))
        for ev in model.events:
            self.rhs.append(to_declared(hazards[ev.name], 1.0))

        # -- outputs in declared units --------------------------------------------------
        self.output_names = tuple(list(model.output_names) + [n for ev in model.events for n in (f"hazard_{ev.name}", f"surv_{ev.name}")])
        self.outputs = [to_declared(q[n].symbol, factor[q[n].symbol]) for n in self.output_names]
        self.output_units = tuple(q[n].unit.text for n in self.output_names)

        # -- initial conditions and dosing expressions ----------------------------------
        static_syms = {q[n].symbol for n in q if q[n].kind in ("parameter", "covariate", "constant")}

        def static_expr(text: str, w: str, unit: Unit, what: str) -> sp.Expr:
            e = parse(text, w)
            check_dims(e, unit, w, what)
            full = e.xreplace(inlined)
            bad = sorted(str(s) for s in full.free_symbols - static_syms)
            if bad:
                raise ModelSpecError(f"{w}: {what} may depend only on parameters, covariates and constants, but uses {bad}")
            return full

        self.initial: list[sp.Expr] = []
        self.dose: list[tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]] = []
        for s in model.states:
            w = where("states", s.name)
            su = q[s.name].unit
            e = static_expr(s.initial, w, su, f"the initial value of `{s.name}`")
            self.initial.append(to_declared(e, factor[q[s.name].symbol]))
            fexp = static_expr(s.bioavailability, w, parse_unit("1"), "bioavailability")
            lag = static_expr(s.lag, w, tu, "lag time")
            rate = static_expr(s.rate, w, su / tu, "modelled infusion rate")
            dur = static_expr(s.duration, w, tu, "modelled infusion duration")
            self.dose.append(
                (
                    to_declared(fexp, 1.0),
                    to_declared(lag, 1.0),
                    to_declared(rate, factor[q[s.name].symbol]),
                    to_declared(dur, 1.0),
                )
            )
        for _ in model.events:  # cumulative hazards start at 0 and take no doses
            self.initial.append(sp.Integer(0))
            self.dose.append((sp.Integer(1), sp.Integer(0), sp.Integer(0), sp.Integer(0)))

        # -- observations -----------------------------------------------------------------
        dvids = {}
        for o in model.observations:
            w = where("observations", o.name)
            if o.output not in self.output_names:
                raise ModelSpecError(f"{w}: `output` must be one of {list(self.output_names)}, got {o.output!r}")
            if o.dvid in dvids:
                raise ModelSpecError(f"{w}: `dvid` {o.dvid} is already used by observation `{dvids[o.dvid]}`")
            dvids[o.dvid] = o.name

        used_elsewhere = set().union(*(e.free_symbols for e in self.rhs + self.outputs + self.initial))
        used_in_dose = set().union(*(e.free_symbols for row in self.dose for e in row))
        #: parameters that enter only F / ALAG / R / D: NONMEM evaluates these per dose record
        self.dose_only_parameters = tuple(
            p.name for p in model.parameters if q[p.name].symbol in used_in_dose - used_elsewhere
        )
        self.t = t
        self.state_symbols = [symbols[n] for n in self.state_names]
        self.parameter_symbols = [q[p.name].symbol for p in model.parameters]
        self.covariate_symbols = [q[c.name].symbol for c in model.covariates]
        self.state_units = tuple(q[n].unit.text for n in self.state_names)

    def jacobian(self) -> sp.Matrix:
        """d(rhs)/d(state), symbolic."""
        return sp.Matrix(self.rhs).jacobian(self.state_symbols)


def _topological(raw: dict[str, sp.Expr], out_syms: dict[sp.Symbol, str], where: _Where) -> list[str]:
    deps = {n: {out_syms[s] for s in e.free_symbols if s in out_syms} for n, e in raw.items()}
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = " -> ".join(stack[stack.index(n):] + [n])
            raise ModelSpecError(f"{where('outputs', n)}: outputs depend on each other in a cycle: {cycle}")
        state[n] = 1
        for d in sorted(deps[n]):
            visit(d, stack + [n])
        state[n] = 2
        order.append(n)

    for n in raw:
        visit(n, [])
    return order
