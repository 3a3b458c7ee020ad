"""Fixtures shared by the integration tests.

The NUTS fit of the synthetic one-compartment data is session-scoped: test_fit and
test_diagnostics both read it, and it is the costliest fixture of the suite (two chains).

The NUTS fits here solve with Rodas4 at fit()'s default tolerances (``fit_options``: rtol
1e-6, atol 1e-9) rather than fit()'s default Tsit5: for these 16 subjects the joint
log-likelihood is the same to 1e-9 relative (Rodas4 -1115.622145, Tsit5 -1115.622144 at one test point)
and its gradient, nearly all of a NUTS fit's time, is ~2x cheaper (2.4 vs 4.9 ms). What the
tests check does not depend on the integrator; fit() with the default solver is covered by
test_fit_map.py (MAP) and notebooks/virtual_ivory_fit.ipynb (NUTS, test_notebooks.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import il2pkpd
from il2pkpd.dosing import Record, Records


@pytest.fixture(scope="session")
def model():
    from test_fit_map import SPEC

    return il2pkpd.build_model(SPEC)


@pytest.fixture(scope="session")
def subjects(model):
    from test_fit_map import TRUTH

    t = np.array([0.25, 0.5, 1, 2, 4, 6, 8, 12, 24.0])
    ds = il2pkpd.simulate(model, "100 mg po once", t, params=TRUTH, n_subjects=16, seed=5, residual_error=True)
    return [Records([Record(0, 1, 100.0, 1, row=0)] + [Record(tt, 0, cmt=2, dvid=1, dv=float(ds.cp_obs.values[i, j]), row=j + 1) for j, tt in enumerate(t)], subject=i + 1)
            for i in range(16)]


@pytest.fixture(scope="session")
def fit_options():
    """Solver settings of the NUTS fits (see the module docstring)."""
    return il2pkpd.SolverOptions(solver="rodas4", rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="session")
def nuts_fit(model, subjects, fit_options):
    from il2pkpd.inference import fit

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(model, subjects, draws=150, tune=150, chains=2, seed=1, options=fit_options)
    messages = [str(w.message) for w in caught if issubclass(w.category, il2pkpd.Il2pkpdWarning)]
    assert any("ESS below 400" in m for m in messages), messages  # 300 draws cannot reach ESS 400
    return result
