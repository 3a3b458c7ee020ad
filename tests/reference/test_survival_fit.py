"""Parametric survival models through fit() (issue 12, items 2-4).

Event-only models (no ODE states of their own: the cumulative hazard is the only state),
one event/censoring row per subject (no TIME 0 row), covariates from the dataset. Oracles:
the closed-form Weibull log-likelihood ``d log h(T) - H(T)`` with ``H`` from TIME 0, the
closed-form exponential MLE ``sum(d) / sum(T)``, ``scipy.stats.lognorm`` for the log-normal
AFT model, and ``scipy.optimize`` on the closed-form likelihoods. Uniform priors make the MAP (PyMC's, on the model's own scale: no Jacobian) the
maximum-likelihood estimate.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.optimize

import il2pkpd
from il2pkpd.errors import DataFormatError, Il2pkpdWarning
from il2pkpd.likelihood import JointLoglik, subject_data

N = 200


def _spec(shape_prior=None, shape_fixed=False):
    shape = {"value": 1.0, "unit": "1", "lower": 0.0}
    if shape_fixed:
        shape["fixed"] = True
    else:
        shape["prior"] = shape_prior or {"dist": "uniform", "lower": 0.2, "upper": 5.0}
    return {
        "model": {"name": "weibull_ph", "time_unit": "day"},
        "parameters": {
            "lam": {"value": 0.002, "unit": "1/day", "lower": 0.0, "prior": {"dist": "uniform", "lower": 1e-5, "upper": 0.1}},
            "shape": shape,
            "b_age": {"value": 0.0, "unit": "1", "prior": {"dist": "uniform", "lower": -1.0, "upper": 1.0}},
            "b_sex": {"value": 0.0, "unit": "1", "prior": {"dist": "uniform", "lower": -5.0, "upper": 5.0}},
        },
        "covariates": {"age": {"value": 60.0, "unit": "1", "label": "AGE"}, "sex": {"value": 0.0, "unit": "1", "label": "SEX"}},
        "events": {"death": {"hazard": "lam*shape*(lam*t)^(shape - 1)*exp(b_age*(age - 60) + b_sex*sex)"}},
    }


# _spec() as a model file (what a user writes for `il2pkpd fit --model`)
WEIBULL_TOML = """
[model]
name = "weibull_ph"
time_unit = "day"

[parameters.lam]
value = 0.002
unit = "1/day"
lower = 0.0
prior = { dist = "uniform", lower = 1e-5, upper = 0.1 }

[parameters.shape]
value = 1.0
unit = "1"
lower = 0.0
prior = { dist = "uniform", lower = 0.2, upper = 5.0 }

[parameters.b_age]
value = 0.0
unit = "1"
prior = { dist = "uniform", lower = -1.0, upper = 1.0 }

[parameters.b_sex]
value = 0.0
unit = "1"
prior = { dist = "uniform", lower = -5.0, upper = 5.0 }

[covariates.age]
value = 60.0
unit = "1"
label = "AGE"

[covariates.sex]
value = 0.0
unit = "1"
label = "SEX"

[events.death]
hazard = "lam*shape*(lam*t)^(shape - 1)*exp(b_age*(age - 60) + b_sex*sex)"
"""

TRUTH = {"lam": 0.002, "shape": 1.4, "b_age": 0.03, "b_sex": 0.5}


def _synthetic(seed: int = 3):
    """SYNTHETIC survival data: Weibull PH by inversion, uniform censoring, end of study 730 d."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 80, N).round()
    sex = rng.integers(0, 2, N).astype(float)
    lp = TRUTH["b_age"] * (age - 60) + TRUTH["b_sex"] * sex
    t_event = (-np.log(rng.random(N)) / np.exp(lp)) ** (1 / TRUTH["shape"]) / TRUTH["lam"]
    t_cens = np.minimum(rng.uniform(100, 1500, N), 730.0)
    time = np.minimum(t_event, t_cens).round(2)
    dead = (t_event <= t_cens).astype(float)
    return time, dead, age, sex


def _csv(path, time, dead, age, sex):
    rows = ["ID,TIME,EVID,EVENT,DV,AGE,SEX"] + [f"{i + 1},{t},0,death,{d:g},{a:g},{s:g}" for i, (t, d, a, s) in enumerate(zip(time, dead, age, sex))]
    path.write_text("\n".join(rows) + "\n")
    return path


def _loglik(x, time, dead, age, sex) -> float:
    lam, shape, b_age, b_sex = x
    lp = b_age * (age - 60) + b_sex * sex
    log_h = np.log(lam * shape) + (shape - 1) * np.log(lam * time) + lp
    big_h = (lam * time) ** shape * np.exp(lp)
    return float(np.sum(dead * log_h - big_h))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    time, dead, age, sex = _synthetic()
    path = _csv(tmp_path_factory.mktemp("surv") / "weibull.csv", time, dead, age, sex)
    return path, (time, dead, age, sex)


def _il2pkpd_loglik(spec: dict, path, x) -> float:
    """il2pkpd's log-likelihood of the dataset at ``x`` (every subject), tight solver tolerance."""
    model = il2pkpd.build_model(spec)
    loglik = JointLoglik(model, subject_data(model, il2pkpd.read_nonmem_csv(path)), il2pkpd.SolverOptions(rtol=1e-10, atol=1e-12))
    total, _, status = loglik(np.tile(x, (len(loglik.subjects), 1)))
    assert np.all(np.asarray(status) == 0)
    return float(total)


def test_cumulative_hazard_counts_from_time_zero_without_a_time_zero_row(data):
    path, arrays = data
    x = [TRUTH[name] for name in _spec()["parameters"]]
    assert _il2pkpd_loglik(_spec(), path, x) == pytest.approx(_loglik(x, *arrays), rel=1e-7)


def test_records_before_time_zero_are_a_delayed_entry_at_zero(tmp_path):
    """A screening record at -10 d does not add 10 days of hazard: H counts from TIME 0."""
    path = tmp_path / "d.csv"
    path.write_text("ID,TIME,EVID,EVENT,DV,AGE,SEX\n1,-10,2,,.,60,0\n1,200,0,death,1,60,0\n2,300,0,death,0,70,1\n")
    model = il2pkpd.build_model(_spec())
    loglik = JointLoglik(model, subject_data(model, il2pkpd.read_nonmem_csv(path)), il2pkpd.SolverOptions(rtol=1e-10, atol=1e-12))
    x = [TRUTH[p.name] for p in model.parameters]
    total, _, _ = loglik(np.tile(x, (2, 1)))
    expected = _loglik(x, np.array([200.0, 300.0]), np.array([1.0, 0.0]), np.array([60.0, 70.0]), np.array([0.0, 1.0]))
    assert float(total) == pytest.approx(expected, rel=1e-7)


def test_an_event_at_or_before_the_origin_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("ID,TIME,EVID,EVENT,DV,AGE,SEX\n1,0,0,death,1,60,0\n")
    model = il2pkpd.build_model(_spec())
    with pytest.raises(DataFormatError, match=r"subject 1 row 1: an event or censoring time must be after the hazard's origin TIME 0, got 0.0"):
        JointLoglik(model, subject_data(model, il2pkpd.read_nonmem_csv(path)))


def test_exponential_map_is_the_closed_form_mle(data):
    """Shape fixed at 1, covariate effects fixed at 0: the MLE of the rate is sum(d)/sum(T)."""
    path, (time, dead, _, _) = data
    spec = _spec(shape_fixed=True)
    for name in ("b_age", "b_sex"):
        spec["parameters"][name] = {"value": 0.0, "unit": "1", "fixed": True}
    fit = il2pkpd.fit(il2pkpd.build_model(spec), path, sampler="map", options=il2pkpd.SolverOptions(rtol=1e-10, atol=1e-12))
    assert fit.info["optimizer"]["converged"]
    assert fit.estimates["lam"] == pytest.approx(dead.sum() / time.sum(), rel=1e-4)


def test_weibull_map_with_covariates_matches_scipy_optimize(data):
    path, arrays = data
    fit = il2pkpd.fit(il2pkpd.build_model(_spec()), path, sampler="map", options=il2pkpd.SolverOptions(rtol=1e-10, atol=1e-12))
    assert fit.info["optimizer"]["converged"]
    # the same likelihood, by scipy.optimize on log(lam), log(shape) (unconstrained)
    res = scipy.optimize.minimize(lambda z: -_loglik([np.exp(z[0]), np.exp(z[1]), z[2], z[3]], *arrays), x0=[np.log(0.005), 0.0, 0.0, 0.0],
                                  method="BFGS", options={"gtol": 1e-6})
    assert np.max(np.abs(res.jac)) < 1e-3  # at the optimum (BFGS may stop on precision loss there)
    mle = {"lam": np.exp(res.x[0]), "shape": np.exp(res.x[1]), "b_age": res.x[2], "b_sex": res.x[3]}
    for name, value in mle.items():
        assert fit.estimates[name] == pytest.approx(value, rel=1e-3), name
    assert "draws" not in fit.info and "chains" not in fit.info  # a MAP records only what it used


def test_weibull_fit_through_the_cli(data, tmp_path):
    from typer.testing import CliRunner

    from il2pkpd.cli import app

    path, _ = data
    model_path = tmp_path / "weibull.toml"
    model_path.write_text(WEIBULL_TOML)
    result = CliRunner().invoke(app, ["fit", "--model", str(model_path), "--data", str(path), "--sampler", "map", "--out", str(tmp_path / "fit")])
    assert result.exit_code == 0, result.output
    back = il2pkpd.load_fit(tmp_path / "fit")
    assert back.info["optimizer"]["converged"]
    assert back.estimates["shape"] == pytest.approx(1.4, rel=0.2)  # the simulation truth, within sampling error of N=200


def test_map_that_stops_early_says_so(data, monkeypatch):
    """An optimiser stopped before the mode (here: 2 iterations) is reported with its
    iteration count and gradient, in a warning and in fit.info."""
    from il2pkpd.inference import pymc_model

    path, _ = data
    original = pymc_model.fit_map
    monkeypatch.setattr(pymc_model, "fit_map", lambda *a, **k: original(*a, **{**k, "maxiter": 2}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = il2pkpd.fit(il2pkpd.build_model(_spec()), path, sampler="map")
    opt = fit.info["optimizer"]
    assert not opt["converged"] and opt["iterations"] <= 2 and opt["gradient_norm"] > pymc_model.MAP_GRADIENT_TOL
    msgs = [str(w.message) for w in caught if issubclass(w.category, Il2pkpdWarning)]
    assert any("MAP did not converge" in m and "after 2 iterations" in m for m in msgs), msgs


# ---- log-normal (accelerated failure time) --------------------------------------------

LOGNORMAL_TRUTH = {"tmed": 400.0, "s": 0.9, "b_age": -0.02, "b_sex": -0.4}


def _lognormal_spec():
    uniform = lambda lo, hi: {"dist": "uniform", "lower": lo, "upper": hi}  # noqa: E731
    return {
        "model": {"name": "lognormal_aft", "time_unit": "day"},
        "parameters": {
            "tmed": {"value": 300.0, "unit": "day", "lower": 0.0, "prior": uniform(10.0, 5000.0)},
            "s": {"value": 1.0, "unit": "1", "lower": 0.0, "prior": uniform(0.1, 5.0)},
            "b_age": {"value": 0.0, "unit": "1", "prior": uniform(-1.0, 1.0)},
            "b_sex": {"value": 0.0, "unit": "1", "prior": uniform(-5.0, 5.0)},
        },
        "covariates": {"age": {"value": 60.0, "unit": "1", "label": "AGE"}, "sex": {"value": 0.0, "unit": "1", "label": "SEX"}},
        "events": {"death": {"hazard": "lognormal_hazard(t, tmed*exp(b_age*(age - 60) + b_sex*sex), s)"}},
    }


def _lognormal_loglik(x, time, dead, age, sex) -> float:
    """scipy.stats: log f(T) for events, log S(T) for censored times."""
    import scipy.stats

    tmed, s, b_age, b_sex = x
    dist = scipy.stats.lognorm(s=s, scale=tmed * np.exp(b_age * (age - 60) + b_sex * sex))
    return float(np.sum(np.where(dead == 1, dist.logpdf(time), dist.logsf(time))))


@pytest.fixture(scope="module")
def lognormal_data(tmp_path_factory):
    """SYNTHETIC log-normal AFT data, uniform censoring, end of study 730 d."""
    rng = np.random.default_rng(11)
    age = rng.uniform(40, 80, N).round()
    sex = rng.integers(0, 2, N).astype(float)
    t = LOGNORMAL_TRUTH
    t_event = t["tmed"] * np.exp(t["b_age"] * (age - 60) + t["b_sex"] * sex + t["s"] * rng.standard_normal(N))
    t_cens = np.minimum(rng.uniform(100, 1500, N), 730.0)
    time = np.minimum(t_event, t_cens).round(2)
    dead = (t_event <= t_cens).astype(float)
    path = _csv(tmp_path_factory.mktemp("lognormal") / "lognormal.csv", time, dead, age, sex)
    return path, (time, dead, age, sex)


def test_lognormal_loglik_equals_scipy_stats(lognormal_data):
    path, arrays = lognormal_data
    x = [LOGNORMAL_TRUTH[name] for name in _lognormal_spec()["parameters"]]
    assert _il2pkpd_loglik(_lognormal_spec(), path, x) == pytest.approx(_lognormal_loglik(x, *arrays), rel=1e-7)


def test_lognormal_map_with_covariates_matches_scipy_optimize(lognormal_data):
    path, arrays = lognormal_data
    fit = il2pkpd.fit(il2pkpd.build_model(_lognormal_spec()), path, sampler="map", options=il2pkpd.SolverOptions(rtol=1e-10, atol=1e-12))
    assert fit.info["optimizer"]["converged"]
    res = scipy.optimize.minimize(lambda z: -_lognormal_loglik([np.exp(z[0]), np.exp(z[1]), z[2], z[3]], *arrays),
                                  x0=[np.log(300.0), 0.0, 0.0, 0.0], method="BFGS", options={"gtol": 1e-6})
    assert np.max(np.abs(res.jac)) < 1e-3
    mle = {"tmed": np.exp(res.x[0]), "s": np.exp(res.x[1]), "b_age": res.x[2], "b_sex": res.x[3]}
    for name, value in mle.items():
        assert fit.estimates[name] == pytest.approx(value, rel=1e-3, abs=1e-5), name


def test_weibull_with_a_decreasing_hazard_equals_the_closed_form(data):
    """Shape < 1 (a hazard infinite at t = 0, typical after an MI): still integrable from 0."""
    path, arrays = data
    x = [0.002, 0.6, 0.03, 0.5]
    assert _il2pkpd_loglik(_spec(), path, x) == pytest.approx(_loglik(x, *arrays), rel=1e-6)
