"""Fixtures shared by the reference tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def linear_growth() -> dict:
    """A model linear in its two random effects (normal IIV on a baseline and a slope) with an
    additive error: y = base + slope t + eps. Laplace-type objectives are exact for it, so the
    Gaussian marginal likelihood (scipy.stats.multivariate_normal) is their oracle."""
    return {
    "model": {"name": "linear_growth", "time_unit": "h"},
    "parameters": {
        "base": {"value": 10.0, "unit": "1", "iiv": {"kind": "normal", "omega": 2.0}},
        "slope": {"value": 0.5, "unit": "1/h", "iiv": {"kind": "normal", "omega": 0.3}},
    },
    "states": {"x": {"unit": "1", "initial": "base"}},
    "odes": {"x": "slope"},
    "outputs": {"y": {"expr": "x", "unit": "1"}},
    "observations": {"y": {"output": "y", "dvid": 1, "error": {"model": "additive", "add": 1.0}}},
}
