"""The expression language's special functions against scipy.stats, in the generated JAX
and NumPy code, at the points where a naive formula fails (t = 0, far tails)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.stats

import il2pkpd
from il2pkpd.errors import ModelSpecError
from il2pkpd.model._special import SPECIAL


def test_normcdf_is_scipy_norm_cdf():
    x = np.array([-40.0, -8.0, -1.3, 0.0, 0.7, 6.0, 40.0])
    for impl in (SPECIAL["normcdf"].jax, SPECIAL["normcdf"].numpy):
        np.testing.assert_allclose(np.asarray(impl(x)), scipy.stats.norm.cdf(x), rtol=1e-13, atol=0)


@pytest.mark.parametrize("module", ["jax", "numpy"])
def test_lognormal_hazard_is_pdf_over_sf(module):
    impl = getattr(SPECIAL["lognormal_hazard"], module)
    tmed, s = 120.0, 0.8
    t = np.array([1e-6, 0.5, 30.0, 120.0, 900.0, 1e5, 1e9])  # z from -23 to +20
    dist = scipy.stats.lognorm(s=s, scale=tmed)
    expected = np.exp(dist.logpdf(t) - dist.logsf(t))  # scipy's own log-space evaluation
    np.testing.assert_allclose(np.asarray(impl(t, tmed, s)), expected, rtol=1e-9)
    assert float(impl(np.array(0.0), tmed, s)) == 0.0 and float(impl(np.array(-1.0), tmed, s)) == 0.0


def test_lognormal_hazard_gradients_are_finite_at_the_origin():
    """Both branches of the guard are differentiated: the discarded one must stay finite."""
    g = jax.grad(lambda a: SPECIAL["lognormal_hazard"].jax(a[0], a[1], a[2]))(np.array([0.0, 100.0, 0.7]))
    assert np.all(np.isfinite(np.asarray(g)))


def _model(hazard: str, tmed_unit: str = "day"):
    return il2pkpd.build_model({
        "model": {"name": "ln", "time_unit": "day"},
        "parameters": {"tmed": {"value": 100.0, "unit": tmed_unit, "lower": 0.0}, "s": {"value": 1.0, "unit": "1", "lower": 0.0}},
        "events": {"e": {"hazard": hazard}},
    })


def test_lognormal_hazard_converts_units_of_its_median():
    """A median in weeks on a clock in days: the compiler converts it (the hazard is the
    same as with the median written in days)."""
    days = _model("lognormal_hazard(t, tmed, s)")
    weeks = _model("lognormal_hazard(t, tmed, s)", tmed_unit="week")
    t = np.array([0.0, 50.0, 700.0])
    out = [il2pkpd.simulate(m, None, times=t, params={"tmed": v}) for m, v in ((days, 700.0), (weeks, 100.0))]
    np.testing.assert_allclose(out[0]["hazard_e"].values, out[1]["hazard_e"].values, rtol=1e-12)
    np.testing.assert_allclose(out[0]["hazard_e"].values.ravel()[1:], np.exp(scipy.stats.lognorm(s=1.0, scale=700.0).logpdf(t[1:]) - scipy.stats.lognorm(s=1.0, scale=700.0).logsf(t[1:])), rtol=1e-9)


@pytest.mark.parametrize("hazard, pattern", [
    ("lognormal_hazard(t, s, s)", r"different dimension.*`t` and `tmed` of lognormal_hazard"),
    ("lognormal_hazard(t, tmed, tmed)", r"argument 3 of lognormal_hazard\(t, tmed, sigma\) must be dimensionless"),
    ("lognormal_hazard(t, tmed)", r"`lognormal_hazard` takes 3 argument"),
    ("normcdf(tmed)/tmed", r"argument 1 of normcdf\(x\) must be dimensionless"),
])
def test_special_function_misuse_is_a_model_spec_error(hazard, pattern):
    with pytest.raises(ModelSpecError, match=pattern) as err:
        _model(hazard)
    assert "\n" not in str(err.value)
