"""Log-likelihood profiling (issue 14) against the profile of the exact likelihood in SciPy.

The linear Gaussian mixed model of tests/reference/test_estimation.py, where FOCE-I's OFV is
the exact marginal likelihood: with the intercept ``base`` fixed at a value, ``scipy.optimize``
maximises ``scipy.stats.multivariate_normal`` densities over the other four quantities, which
gives the profile OFV; ``scipy.optimize.brentq`` on it gives the profile-likelihood interval's
exact ends.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
from scipy.stats import chi2

import il2pkpd
from il2pkpd.errors import OptionError
from il2pkpd.inference.profile import profile_likelihood

from test_estimation import _data, _ofv


def _scipy_profile(base: float, designs) -> float:
    res = scipy.optimize.minimize(lambda x: _ofv(np.concatenate([[base], x]), designs), np.array([0.5, math.log(2.0), math.log(0.04), 0.0]),
                                  method="BFGS", options={"gtol": 1e-8})
    return float(res.fun)


def test_profile_ofv_and_interval_match_the_exact_likelihoods_profile(linear_growth):
    subjects, designs = _data(n=12)
    model = il2pkpd.build_model(linear_growth)
    values = [8.5, 8.75, 9.8, 10.05]  # the estimate is 9.28; the exact ends 8.62 and 9.93
    prof = profile_likelihood(model, subjects, "base", values, level=0.9)
    expected = np.array([_scipy_profile(v, designs) for v in values])
    np.testing.assert_allclose(prof.ofv, expected, rtol=0, atol=1e-4)
    assert prof.converged.all()
    free = scipy.optimize.minimize(_ofv, np.array([10.0, 0.5, math.log(2.0), math.log(0.04), 0.0]), args=(designs,), method="BFGS",
                                   options={"gtol": 1e-9})
    assert prof.ofv_min == pytest.approx(free.fun, abs=1e-5) and prof.estimate == pytest.approx(free.x[0], rel=1e-4)
    threshold = chi2.ppf(0.9, 1)
    assert prof.threshold == pytest.approx(threshold)
    lo = scipy.optimize.brentq(lambda b: _scipy_profile(b, designs) - free.fun - threshold, values[0], free.x[0])
    hi = scipy.optimize.brentq(lambda b: _scipy_profile(b, designs) - free.fun - threshold, free.x[0], values[-1])
    # the ends interpolate the signed root sqrt(dOFV) linearly between the values given (and
    # the estimate): exact for a quadratic profile, and this one is close to quadratic
    assert prof.lower == pytest.approx(lo, abs=0.01) and prof.upper == pytest.approx(hi, abs=0.01)


def test_an_interval_the_values_do_not_close_is_reported_open(linear_growth):
    subjects, _ = _data(n=12)
    model = il2pkpd.build_model(linear_growth)
    prof = profile_likelihood(model, subjects, "base", [9.2, 9.35], level=0.9)  # the estimate is 9.28
    assert prof.lower is None and prof.upper is None and np.all(prof.delta_ofv < prof.threshold)


def test_bad_arguments_are_refused_before_any_fit(linear_growth):
    model = il2pkpd.build_model(linear_growth)
    subjects, _ = _data(n=2)
    with pytest.raises(OptionError, match=r"`parameter` must be a parameter of model .*, got 'nope'"):
        profile_likelihood(model, subjects, "nope", [1.0, 2.0])
    with pytest.raises(OptionError, match=r"`values` must be at least two distinct finite numbers, got \[1.0\]"):
        profile_likelihood(model, subjects, "base", [1.0])
    with pytest.raises(OptionError, match=r"`values` must be at least two distinct finite numbers, got \[1.0, nan\]"):
        profile_likelihood(model, subjects, "base", [1.0, float("nan")])
    with pytest.raises(OptionError, match=r"`level` must be a number in \(0, 1\), got 1.5"):
        profile_likelihood(model, subjects, "base", [1.0, 2.0], level=1.5)
    with pytest.raises(OptionError, match=r"`method` must be one of"):
        profile_likelihood(model, subjects, "base", [1.0, 2.0], method="saem")


_CACHE_SCRIPT = r"""
import sys, tomllib
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import il2pkpd
from il2pkpd.inference.profile import profile_likelihood
from test_estimation import _data

cache = Path(sys.argv[2])
model = il2pkpd.build_model(tomllib.loads((Path(sys.argv[1]) / "data" / "linear_growth.toml").read_text()))
subjects, _ = _data(n=12)
profile_likelihood(model, subjects, "base", [8.5, 8.75])
first = len(list(cache.rglob("*")))
profile_likelihood(model, subjects, "base", [9.8, 10.05])
print(first, len(list(cache.rglob("*"))))
"""


def test_profile_points_reuse_one_compiled_program(tmp_path):
    """The fixed value is an argument of the compiled objective, not a constant in it: after
    one profile point, further points (other values) add nothing to the persistent
    compilation cache; with the value compiled in, each point added its own programs."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, IL2PKPD_CACHE_DIR=str(tmp_path), JAX_PLATFORMS="cpu")
    env.pop("IL2PKPD_NO_COMPILE_CACHE", None)
    res = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT, str(Path(__file__).parent), str(tmp_path)], env=env,
                         capture_output=True, text=True, check=True)
    first, after = map(int, res.stdout.split()[-2:])
    assert first > 0 and after == first
