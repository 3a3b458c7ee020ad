"""A model's content fingerprint (fits and sweeps record it to detect a changed model)."""

from __future__ import annotations

import hashlib


def model_hash(model) -> str:
    """SHA-256 of the model's content (parameters, states, equations, observations, events)."""
    parts = [model.name, model.time_unit, repr(model.parameters), repr(model.constants), repr(model.covariates),
             repr(model.states), repr(sorted(model.odes.items())), repr(model.outputs), repr(model.observations), repr(model.events)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
