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
    return PublishedCalibration(ivory, n_virtual=8, event_evidence=True)


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


def test_hazard_ratio_evidence_terms_match_scipy(ivory, cal, typical):
    """The Figueroa tertile and BIOVASC per-SUV hazard ratios (BRIEF S80, S90) as data on
    beta_tbr: the model's HR is exp(beta x scale) and the log-likelihood is the normal density
    of the reported log HR with variance SE_CI^2 + (beta x scale x CV_scale)^2, written here
    with scipy.stats from the published rows."""
    pub = published().set_index("id")
    beta = float(typical[ivory.parameter_names.index("beta_tbr")])
    pred, terms = cal.predictions(typical), cal.log_likelihood_terms(typical)
    assert set(terms) - set(PublishedCalibration(ivory, n_virtual=8).log_likelihood_terms(typical)) == {"figueroa_tertile_hr", "biovasc_suvmax_hr"}
    for hr_id, scale_id in (("figueroa_tertile_hr", "figueroa_tertile_dtbr"), ("biovasc_suvmax_hr", "suv_to_tbr")):
        hr, sc = pub.loc[hr_id], pub.loc[scale_id]
        log_hr = beta * sc.value
        assert float(pred[hr_id]) == pytest.approx(np.exp(log_hr), rel=1e-12)
        se_ci = (np.log(hr.upper) - np.log(hr.lower)) / (2 * stats.norm.ppf(0.975))
        cv = (sc.upper - sc.lower) / (2 * stats.norm.ppf(0.975)) / sc.value
        assert float(terms[hr_id]) == pytest.approx(stats.norm.logpdf(np.log(hr.value), log_hr, np.hypot(se_ci, log_hr * cv)), rel=1e-10)


def test_finale_split_of_a_point_posterior_is_the_virtual_trial_by_simulate(ivory, cal, typical):
    """finale_split at a one-draw posterior (the typical values): the expected MI counts are
    n x (1 - mean two-year survival) and the hazard ratio is log S_il2 / log S_placebo of the
    virtual population, here computed with simulate() (BRIEF S3/S19 arm sizes from the
    published set)."""
    from il2pkpd.inference.calibration import finale_split

    class PointPosterior:
        info = {"n_virtual": 8, "seed": 0}

        def population_draws(self):
            return {p.name: np.array([p.value]) for p in ivory.parameters}

    split = finale_split(PointPosterior(), ivory, draws=1)
    table = _individual_table(ivory, cal, typical)
    kw = dict(subject_params=table, solver="rodas4", rtol=1e-6, atol=1e-9)
    s_il2 = il2pkpd.simulate(ivory, IVORY_REGIMEN, np.array([730.5]), **kw)["surv_mi"].values[:, 0].mean()
    s_pbo = il2pkpd.simulate(ivory, None, np.array([730.5]), **kw)["surv_mi"].values[:, 0].mean()
    pub = published().set_index("id")
    assert split["il2"]["expected_count"]["median"] == pytest.approx(pub.loc["finale_mi_2y_il2_count"].n * (1 - s_il2), rel=1e-4)
    assert split["placebo"]["expected_count"]["median"] == pytest.approx(pub.loc["finale_mi_2y_placebo_count"].n * (1 - s_pbo), rel=1e-4)
    assert split["hazard_ratio"]["median"] == pytest.approx(np.log(s_il2) / np.log(s_pbo), rel=1e-4)
    assert split["il2"]["observed"] == 0 and split["placebo"]["observed"] == 3


def test_model_without_the_outputs_is_refused(pk1):
    with pytest.raises(il2pkpd.ModelSpecError, match="lacks outputs"):
        PublishedCalibration(pk1)


def test_the_calibration_gradient_at_32_virtual_subjects_is_central_differences(ivory):
    """The exact gradient (Rodas4's loop adjoint) of the log posterior equals central differences
    of the log posterior. At 32 virtual subjects per arm (the stored fit's size) the adjoint's
    re-run of a checkpointed chunk differed from the forward pass by round-off, which a
    bit-exact check turned into a NaN gradient everywhere: the mode search then stopped at once."""
    big = PublishedCalibration(ivory, n_virtual=32)
    u0 = big.u_start()
    value, grad = big._grad(jnp.asarray(u0))
    grad = np.asarray(grad)
    assert np.isfinite(float(value)) and np.isfinite(grad).all()
    names = [p.name for p in big.estimated]
    for name in ("f_sc", "ec50", "kprol", "p_mi_1y", "beta_tbr"):
        i = names.index(name)
        step = np.zeros(len(u0))
        step[i] = 1e-5
        fd = (big.log_posterior(u0 + step) - big.log_posterior(u0 - step)) / 2e-5
        assert grad[i] == pytest.approx(fd, rel=1e-6, abs=1e-6), name
