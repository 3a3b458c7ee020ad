"""Tempered SMC (il2pkpd.inference.smc) against closed forms.

Tolerances are about 4 standard deviations of each estimate across seeds 0-9 (measured when
the tests were written: 1,000 particles; the spread is quoted at each assert); seed 0 is run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import special, stats

from il2pkpd.errors import OptionError
from il2pkpd.inference.calibration import _psis
from il2pkpd.inference.smc import tempered_smc

SHAPE, DIM = 1.2, 6  # log-gamma(1.2) coordinates: skewed, with an exponential left tail


def log_gamma_density(u, label=""):
    """Normalised log density of u = log x, x ~ Gamma(SHAPE, 1) per coordinate: log Z = 0."""
    return np.sum(SHAPE * u - np.exp(u), axis=1) - DIM * special.gammaln(SHAPE)


def laplace_reference():
    """The Laplace normal of log_gamma_density: mode log(SHAPE), curvature SHAPE."""
    return stats.multivariate_normal(mean=np.full(DIM, math.log(SHAPE)), cov=np.eye(DIM) / SHAPE)


def test_a_skewed_target_where_importance_sampling_from_the_laplace_normal_fails():
    """Importance sampling from the Laplace normal fails its own check here (Pareto k-hat >=
    0.7: the target's exponential left tail is heavier than the normal's), as for the
    published calibration; tempered SMC from the same normal recovers the closed-form mean
    digamma(a), variance trigamma(a) and normalising constant (1) of log Gamma(a) draws."""
    ref = laplace_reference()
    x = ref.rvs(size=4000, random_state=np.random.default_rng(0))
    assert _psis(log_gamma_density(x) - ref.logpdf(x))[1] >= 0.7
    run = tempered_smc(log_gamma_density, ref, particles=1000, rng=np.random.default_rng(0))
    u = run["u"]
    assert run["beta"] == 1.0 and len(run["stages"]) >= 2 and u.shape == (1000, DIM)
    assert u.mean() == pytest.approx(special.digamma(SHAPE), abs=0.06)  # seed spread: SD 0.016
    assert u.var(axis=0).mean() == pytest.approx(special.polygamma(1, SHAPE), rel=0.11)  # SD 0.035 (2.8%)
    assert run["log_evidence"] == pytest.approx(0.0, abs=0.16)  # SD 0.039
    last = run["stages"][-1]
    assert last["correlation_with_start"] < 0.1 and 0.1 < last["acceptance"] < 0.5


def test_a_correlated_gaussian_far_from_the_reference():
    """An unnormalised correlated normal (log Z = -7.3) reached from N(0, 9 I) in several
    stages: its mean, covariance and normalising constant."""
    mean = np.array([1.0, -2.0, 0.5])
    cov = np.array([[1.0, 0.8, 0.2], [0.8, 1.5, -0.3], [0.2, -0.3, 0.5]])
    offset = -7.3
    target = stats.multivariate_normal(mean, cov)
    run = tempered_smc(lambda u, label: target.logpdf(u) + offset, stats.multivariate_normal(np.zeros(3), 9 * np.eye(3)),
                       particles=1000, rng=np.random.default_rng(0))
    u = run["u"]
    assert len(run["stages"]) >= 3
    np.testing.assert_allclose(u.mean(axis=0), mean, atol=0.13)  # seed spread: SD <= 0.032
    np.testing.assert_allclose(np.cov(u.T), cov, atol=0.15)  # largest error over seeds 0-5: 0.03-0.10
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(np.corrcoef(u.T), cov / np.outer(sd, sd), atol=0.1)
    assert run["log_evidence"] == pytest.approx(offset, abs=0.3)  # SD 0.071


def _json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    return {k: _json(v) for k, v in value.items()} if isinstance(value, dict) else value


@pytest.mark.parametrize("stop_at", [0, 1, 5, "end of stage 1", "end of stage 2"])
def test_a_stopped_run_resumes_from_its_json_checkpoint_to_the_same_draws(stop_at):
    """A state handed to ``on_stage`` (right after the first resampling, one Metropolis step
    into the first stage, a few steps further, at the ends of stages 1 and 2), written as JSON
    and read back, resumes the run to exactly the draws of the run that was not stopped (same
    random stream)."""
    whole = tempered_smc(log_gamma_density, laplace_reference(), particles=200, rng=np.random.default_rng(3))
    saved = []

    def checkpoint(state):
        saved.append(json.dumps(_json(state)))

    tempered_smc(log_gamma_density, laplace_reference(), particles=200, rng=np.random.default_rng(3), on_stage=checkpoint)
    assert len(saved) == len(whole["stages"]) + sum(r["steps"] for r in whole["stages"])
    if isinstance(stop_at, str):  # the checkpoint after a stage's last step: resampling + steps of the stages so far
        stages = int(stop_at[-1])
        stop_at = sum(1 + r["steps"] for r in whole["stages"][:stages]) - 1
        assert json.loads(saved[stop_at])["moving"] is None and len(json.loads(saved[stop_at])["stages"]) == stages
    resumed = tempered_smc(log_gamma_density, laplace_reference(), particles=200, rng=np.random.default_rng(99),
                           state=json.loads(saved[stop_at]))
    np.testing.assert_array_equal(resumed["u"], whole["u"])
    assert resumed["log_evidence"] == whole["log_evidence"] and resumed["evaluations"] == whole["evaluations"]


def test_checkpoints_held_in_memory_stay_as_they_were_handed_over():
    """The state given to ``on_stage`` is a copy: a callback that keeps it (rather than writing
    it at once) resumes from it to the same draws as the uninterrupted run."""
    whole = tempered_smc(log_gamma_density, laplace_reference(), particles=100, rng=np.random.default_rng(4))
    kept = []
    tempered_smc(log_gamma_density, laplace_reference(), particles=100, rng=np.random.default_rng(4), on_stage=kept.append)
    assert kept[0]["moving"]["steps"] == 0 and kept[0]["stages"] == []
    resumed = tempered_smc(log_gamma_density, laplace_reference(), particles=100, rng=np.random.default_rng(0), state=kept[3])
    np.testing.assert_array_equal(resumed["u"], whole["u"])


def test_a_state_made_with_another_reference_is_refused():
    """Resuming with a reference other than the one the state was made with (as when a mode
    found again has moved) would make every later acceptance ratio wrong: refused."""
    kept = []
    tempered_smc(log_gamma_density, laplace_reference(), particles=100, rng=np.random.default_rng(4), on_stage=kept.append)
    moved = stats.multivariate_normal(mean=np.full(DIM, math.log(SHAPE) + 0.01), cov=np.eye(DIM) / SHAPE)
    with pytest.raises(OptionError, match="`state` was made with another reference distribution"):
        tempered_smc(log_gamma_density, moved, particles=100, rng=np.random.default_rng(0), state=kept[2])


def test_failed_evaluations_get_no_weight_and_are_never_moved_to():
    """Where the target cannot be evaluated (-inf: a failed solve) no particle ends up: the
    half-normal on u > 0 from a normal reference over both signs (mean sqrt(2/pi))."""

    def half_normal(u, label):
        return np.where(u[:, 0] > 0, stats.norm.logpdf(u[:, 0]) + math.log(2), -np.inf)

    run = tempered_smc(half_normal, stats.multivariate_normal([0.5], [[1.0]]), particles=1000, rng=np.random.default_rng(0))
    assert np.all(run["u"] > 0) and run["failed"] > 0
    assert run["u"].mean() == pytest.approx(math.sqrt(2 / math.pi), abs=0.08)
    assert run["log_evidence"] == pytest.approx(0.0, abs=0.15)


def test_nan_evaluations_count_as_failures():
    """NaN from ``evaluate`` (a solver that returns NaN rather than -inf) is a failure too: the
    same half-normal, its mean sqrt(2/pi)."""
    run = tempered_smc(lambda u, label: np.where(u[:, 0] > 0, stats.norm.logpdf(u[:, 0]) + math.log(2), np.nan),
                       stats.multivariate_normal([0.5], [[1.0]]), particles=1000, rng=np.random.default_rng(0))
    assert np.all(run["u"] > 0) and run["failed"] > 0
    assert run["u"].mean() == pytest.approx(math.sqrt(2 / math.pi), abs=0.08)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"particles": 10}, "`particles` must be an integer >= 20, got 10"),
    ({"target_ess": 1.0}, "`target_ess` must be in (0, 1), got 1.0"),
    ({"correlation": 0.0}, "`correlation` must be in (0, 1), got 0.0"),
    ({"min_steps": 5, "max_steps": 2}, "need 1 <= `min_steps` (5) <= `max_steps` (2)"),
])
def test_bad_settings_are_refused(kwargs, message):
    settings = {"particles": 100, **kwargs}
    with pytest.raises(OptionError) as err:
        tempered_smc(log_gamma_density, laplace_reference(), rng=np.random.default_rng(0), **settings)
    assert str(err.value) == message


def test_a_target_that_fails_almost_everywhere_is_refused():
    with pytest.raises(OptionError, match="could not be evaluated at 100 of 100 reference draws"):
        tempered_smc(lambda u, label: np.full(len(u), -np.inf), laplace_reference(), particles=100, rng=np.random.default_rng(0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sampler": "nuts"}, "`sampler` must be one of ['importance', 'smc'], got 'nuts'"),
    ({"particles": 200}, "['particles'] are settings of sampler='smc', not of sampler='importance'"),
    ({"sampler": "smc", "rounds": 3}, "['rounds'] are settings of sampler='importance', not of sampler='smc'"),
    ({"sampler": "smc", "particles": 5}, "`particles` must be an integer >= 20, got 5"),
    ({"sampler": "smc", "particles": 100, "draws": 200}, "`draws` (200) must be <= `particles` (100) with sampler='smc': the draws are particles"),
])
def test_the_calibration_refuses_smc_settings_it_cannot_use_before_any_work(kwargs, message):
    """calibrate_published(sampler="smc") refuses, in one line and before building the
    calibration (the model here is a placeholder never reached), settings it would ignore."""
    from il2pkpd.inference.calibration import calibrate_published

    with pytest.raises(OptionError) as err:
        calibrate_published(object(), **kwargs)
    assert str(err.value) == message
