"""A model's content fingerprint (fits and sweeps record it to detect a changed model)."""

from __future__ import annotations

import dataclasses
import hashlib

#: Fields that document a model without changing what it computes (a `label` is a NONMEM name
#: that datasets and --param use, so it stays in): editing them (correcting a
#: description, adding a source) must not make every stored fit of the model look stale.
PROSE_FIELDS = frozenset({"description", "source"})


def _content(x):
    """``x`` with every prose field of every spec emptied (specs are frozen dataclasses)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: _content(getattr(x, f.name)) if f.name not in PROSE_FIELDS else ""
                                         for f in dataclasses.fields(x) if f.init})
    if isinstance(x, (list, tuple)):
        return type(x)(_content(v) for v in x)
    if isinstance(x, dict):
        return {k: _content(v) for k, v in x.items()}
    return x


def model_hash(model) -> str:
    """SHA-256 of what the model computes: name, time unit, drug (dose unit conversions), parameters (values, units, bounds,
    priors, IIV, fixed), constants, covariates, states, equations, outputs, observations and
    events; descriptions and sources are left out (:data:`PROSE_FIELDS`)."""
    parts = [model.name, model.time_unit, repr(getattr(model, "drug", None)), repr(_content(model.parameters)), repr(_content(model.constants)),
             repr(_content(model.covariates)), repr(_content(model.states)), repr(sorted(model.odes.items())),
             repr(_content(model.outputs)), repr(_content(model.observations)), repr(_content(model.events))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
