"""Aggregate-data calibration pieces against independent computations.

* VirtualPopulation outputs equal simulate() with the same individual parameters (the
  SciPy-free JAX path vs the user-facing path, which builds records its own way);
* each published target's model value and log-likelihood at the typical values equal a
  hand computation from simulate() outputs and scipy.stats (binomial, normal), with the
  reported numbers read from the published-evidence set (BRIEF sources S1, S3, S13).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import il2pkpd
from il2pkpd.datasets import published
from il2pkpd.inference.calibration import IVORY_REGIMEN, PublishedCalibration
from il2pkpd.likelihood import individual_theta, se_from_ci


@pytest.fixture(scope="module")
def cal(ivory):
    return PublishedCalibration(ivory, n_virtual=8)


@pytest.fixture(scope="module")
def typical(ivory):
    return jnp.array([p.value for p in ivory.parameters])


def _individual_table(ivory, cal, typical):
    omegas = jnp.array([p.iiv.omega if p.iiv is not None else 0.0 for p in ivory.parameters])
    th = np.asarray(individual_theta(ivory, typical, omegas, jnp.asarray(cal.population._z)))
    return {p.name: th[:, j] for j, p in enumerate(ivory.parameters)}


def test_virtual_population_equals_simulate(ivory, cal, typical):
    out = cal.population.outputs(typical)
    table = _individual_table(ivory, cal, typical)
    ds = il2pkpd.simulate(ivory, IVORY_REGIMEN, np.array([0.0, 61.0, 730.5]), subject_params=table, solver="rodas4", rtol=1e-6, atol=1e-9)
    j = ivory.symbolic.output_names.index("tbr")
    np.testing.assert_allclose(np.asarray(out["ivory_il2"][0][:, :, j]), ds["tbr"].values, rtol=1e-5)


def test_targets_match_hand_computation(ivory, cal, typical):
    table = _individual_table(ivory, cal, typical)
    kw = dict(subject_params=table, solver="rodas4", rtol=1e-6, atol=1e-9)
    il2 = il2pkpd.simulate(ivory, IVORY_REGIMEN, np.array([0.0, 61.0, 730.5]), **kw)
    pla = il2pkpd.simulate(ivory, None, np.array([0.0, 61.0, 730.5]), **kw)
    pred = cal.predictions(typical)
    diff = il2["tbr"].values[:, 1].mean() - pla["tbr"].values[:, 1].mean()
    assert float(pred["ivory_tbr_diff_index"]) == pytest.approx(diff, rel=1e-4)
    p_pl = 1 - pla["surv_mi"].values[:, 2].mean()
    assert float(pred["finale_mi_2y_placebo_count"]) == pytest.approx(p_pl, rel=1e-4)
    terms = cal.log_likelihood_terms(typical)
    pub = published().set_index("id")
    assert float(terms["finale_mi_2y_placebo_count"]) == pytest.approx(stats.binom.logpmf(3, 27, p_pl), rel=1e-4)
    row = pub.loc["ivory_tbr_diff_index"]
    se = se_from_ci(row.lower, row.upper)
    assert float(terms["ivory_tbr_diff_index"]) == pytest.approx(stats.norm.logpdf(row.value, diff, se), rel=1e-4)
    lil = il2pkpd.simulate(ivory, f"{pub.loc['lilacs_ed75'].value} MIU sc qd x5", np.array([5.0]), **kw)
    assert float(pred["lilacs_ed75"]) == pytest.approx(100 * (lil["treg_fold"].values[:, 0].mean() - 1), rel=1e-4)


def test_model_without_the_outputs_is_refused(pk1):
    with pytest.raises(il2pkpd.ModelSpecError, match="lacks outputs"):
        PublishedCalibration(pk1)
