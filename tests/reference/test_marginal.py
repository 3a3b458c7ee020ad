"""FOCE, FOCE-I and Laplace objectives (issue 14) against oracles outside their code.

* A model linear in its random effects with an additive error: every Laplace-type method is
  then exact, and the OFV must equal ``-2 log`` of the Gaussian marginal density
  (``scipy.stats.multivariate_normal``: ``y_i ~ N(X beta, X Omega X' + sigma^2 I)``) without
  its ``n log 2 pi``, for a full (correlated) Omega.
* A one-compartment bolus model in closed form with a combined error, an M3-censored row and
  a time-to-event row: the Laplace objective ``l(eta*) + log omega^2 + log(l''(eta*)/2)``
  computed with NumPy/SciPy (``minimize_scalar`` for the mode, central differences for
  ``l''``), and FOCE-I's and FOCE's (NONMEM's formulas, shared/conformance/warfarin/model.md
  and Wang 2007) computed the same way on the Gaussian rows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from scipy.special import log_ndtr

import il2pkpd
from il2pkpd.dosing import Record, Records
from il2pkpd.errors import OptionError
from il2pkpd.likelihood import MarginalLikelihood

LOG_2PI = math.log(2 * math.pi)


@pytest.mark.parametrize("method", ["foce", "focei", "laplace"])
def test_linear_gaussian_model_ofv_is_the_exact_marginal_likelihood(method, linear_growth):
    model = il2pkpd.build_model(linear_growth)
    rng = np.random.default_rng(3)
    subjects, designs = [], []
    for i in range(5):
        # a sample at TIME 0 in every subject: the state starts at its initial value at the first record
        t = np.concatenate([[0.0], np.sort(rng.choice(np.arange(1.0, 12.0, 1.0), size=2 + i, replace=False))])
        y = 10.0 + rng.normal(0, 2.0) + (0.5 + rng.normal(0, 0.3)) * t + rng.normal(0, 1.0, t.size)
        subjects.append(Records(tuple(Record(time=float(tt), evid=0, dvid=1, dv=float(v), row=j) for j, (tt, v) in enumerate(zip(t, y))), subject=i + 1))
        designs.append((t, y))
    omega = np.array([[3.0, 0.2], [0.2, 0.05]])
    theta, sigma = np.array([9.0, 0.6]), 1.3
    ml = MarginalLikelihood(model, subjects, method=method)
    got = ml.modes(theta, omega, {"y": {"add": sigma}})
    expected = []
    for t, y in designs:
        x = np.column_stack([np.ones_like(t), t])
        cov = x @ omega @ x.T + sigma**2 * np.eye(t.size)
        expected.append(-2 * scipy.stats.multivariate_normal(x @ theta, cov).logpdf(y) - t.size * LOG_2PI)
    assert got.converged.all()
    np.testing.assert_allclose(got.obj, expected, rtol=1e-9)
    # the modes are the conditional means of eta (Gaussian): Omega X' C^-1 (y - X theta)
    for (t, y), eta in zip(designs, got.eta):
        x = np.column_stack([np.ones_like(t), t])
        cov = x @ omega @ x.T + sigma**2 * np.eye(t.size)
        np.testing.assert_allclose(eta, omega @ x.T @ np.linalg.solve(cov, y - x @ theta), atol=1e-8)


BOLUS = {
    "model": {"name": "bolus_tte", "time_unit": "h"},
    "parameters": {
        "k": {"value": 0.2, "unit": "1/h", "lower": 0.0, "iiv": {"kind": "lognormal", "omega": 0.4}},
        "v": {"value": 10.0, "unit": "L", "lower": 0.0},
        "lam": {"value": 0.02, "unit": "L/mg/h", "lower": 0.0},
    },
    "states": {"center": {"unit": "mg", "dose": True}},
    "odes": {"center": "-k*center"},
    "outputs": {"cp": {"expr": "center/v", "unit": "mg/L"}},
    "observations": {"cp": {"output": "cp", "dvid": 1, "error": {"model": "combined", "add": 0.1, "prop": 0.2}}},
    "events": {"mi": {"hazard": "lam*center/v"}},
}
DOSE, ADD, PROP, OMEGA2 = 100.0, 0.15, 0.12, 0.3
OBS = [(1.0, 8.0), (2.0, 6.9), (4.0, 4.1), (6.0, 2.2)]  # (time h, DV mg/L)
LLOQ_T, LLOQ, EVENT_T = 24.0, 0.5, 10.0


def _records(censored_and_event: bool) -> list[Records]:
    rows = [Record(time=0.0, evid=1, amt=DOSE, cmt=1, row=0)]
    rows += [Record(time=t, evid=0, dvid=1, dv=dv, row=j + 1) for j, (t, dv) in enumerate(OBS)]
    if censored_and_event:
        rows += [Record(time=EVENT_T, evid=0, event="mi", dv=1.0, row=5), Record(time=LLOQ_T, evid=0, dvid=1, dv=LLOQ, cens=1, lloq=LLOQ, row=6)]
    return [Records(tuple(sorted(rows, key=lambda r: (r.time, r.row))), subject=1)]


def _closed_form(eta: float, interaction: bool = True, censored_and_event: bool = False):
    """d(eta) (the data's -2 log-likelihood without n log 2 pi), the predictions and their
    residual variances, all in NumPy."""
    k, v, lam = 0.2 * math.exp(eta), 10.0, 0.02
    t = np.array([o[0] for o in OBS])
    y = np.array([o[1] for o in OBS])
    f = DOSE / v * np.exp(-k * t)
    f0 = DOSE / v * np.exp(-0.2 * t)
    var = ADD**2 + PROP**2 * (f if interaction else f0) ** 2
    d = float(np.sum(np.log(var) + (y - f) ** 2 / var))
    if censored_and_event:
        f_c = DOSE / v * math.exp(-k * LLOQ_T)
        d -= 2 * float(log_ndtr((LLOQ - f_c) / math.sqrt(ADD**2 + PROP**2 * f_c**2)))
        hazard = lam * DOSE / v * math.exp(-k * EVENT_T)
        cumhaz = lam * DOSE / (v * k) * (1 - math.exp(-k * EVENT_T))
        d -= 2 * (math.log(hazard) - cumhaz)
    return d, f, var


def _mode(l_fn) -> float:
    return scipy.optimize.minimize_scalar(l_fn, bounds=(-3, 3), method="bounded", options={"xatol": 1e-12}).x


def _second_derivative(fn, x, h=1e-4):
    return (fn(x + h) - 2 * fn(x) + fn(x - h)) / h**2


def _model():
    return il2pkpd.build_model(BOLUS)


def test_laplace_with_censored_and_event_rows_matches_scipy():
    ml = MarginalLikelihood(_model(), _records(True), method="laplace")
    got = ml.modes(np.array([0.2, 10.0, 0.02]), np.array([[OMEGA2]]), {"cp": {"add": ADD, "prop": PROP}})

    def l_fn(eta):
        return _closed_form(eta, censored_and_event=True)[0] + eta**2 / OMEGA2

    eta = _mode(l_fn)
    expected = l_fn(eta) + math.log(OMEGA2) + math.log(_second_derivative(l_fn, eta) / 2)
    assert got.converged.all()
    assert got.eta[0, 0] == pytest.approx(eta, abs=1e-7)
    assert got.obj[0] == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("method", ["focei", "foce"])
def test_foce_and_focei_objectives_match_nonmems_formulas_computed_with_scipy(method):
    interaction = method == "focei"
    ml = MarginalLikelihood(_model(), _records(False), method=method)
    got = ml.modes(np.array([0.2, 10.0, 0.02]), np.array([[OMEGA2]]), {"cp": {"add": ADD, "prop": PROP}})

    def l_fn(eta):
        return _closed_form(eta, interaction)[0] + eta**2 / OMEGA2

    eta = _mode(l_fn)
    _, f, var = _closed_form(eta, interaction)
    h = 1e-6
    g = (_closed_form(eta + h)[1] - _closed_form(eta - h)[1]) / (2 * h)  # d f / d eta
    info = 1 / var + (2 * PROP**4 * f**2 / var**2 if interaction else 0.0)  # NONMEM's FOCE-I term (model.md)
    expected = l_fn(eta) + math.log(OMEGA2) + math.log(1 / OMEGA2 + np.sum(g**2 * info))
    assert got.converged.all()
    assert got.eta[0, 0] == pytest.approx(eta, abs=1e-7)
    assert got.obj[0] == pytest.approx(expected, rel=1e-8)


def test_foce_refuses_event_and_censored_rows_naming_the_row():
    with pytest.raises(OptionError, match=r"row 6 is an event row: use method='laplace'"):
        MarginalLikelihood(_model(), _records(True), method="focei")


def test_bad_population_parameters_are_refused():
    ml = MarginalLikelihood(_model(), _records(False), method="focei")
    theta, omega = np.array([0.2, 10.0, 0.02]), np.array([[OMEGA2]])
    with pytest.raises(OptionError, match="`error` has no parameters for observation 'cp'"):
        ml.modes(theta, omega, {})
    with pytest.raises(OptionError, match=r"`error\['cp'\]` has \['sigma'\], which a combined error model does not take"):
        ml.modes(theta, omega, {"cp": {"add": ADD, "prop": PROP, "sigma": 0.1}})
    with pytest.raises(OptionError, match="`prop` of a combined error model must be a finite number > 0, got 0.0"):
        ml.modes(theta, omega, {"cp": {"add": ADD, "prop": 0.0}})
    with pytest.raises(OptionError, match="`omega` must be symmetric positive definite"):
        ml.modes(theta, np.array([[-0.1]]), {"cp": {"add": ADD, "prop": PROP}})


def test_bad_method_and_solver_are_refused():
    with pytest.raises(OptionError, match="`method` must be one of"):
        MarginalLikelihood(_model(), _records(False), method="saem")
    with pytest.raises(OptionError, match="must be 'rodas4'"):
        MarginalLikelihood(_model(), _records(False), options=il2pkpd.SolverOptions(solver="tsit5"))


# FOCE is marked slow: compiling its gradient takes 10-40 s on the CI machine, and FOCE-I
# covers the same code
@pytest.mark.parametrize("method", ["focei", pytest.param("foce", marks=pytest.mark.slow), "laplace"])
def test_objective_gradient_equals_central_differences_of_the_objective(method):
    """The exact gradient (implicit differentiation through the modes) against central
    differences of the OFV itself, each point with its modes solved again."""
    import jax.numpy as jnp

    records = _records(method == "laplace")
    ml = MarginalLikelihood(_model(), records + [Records(tuple(replace_dv(r, 0.8) for r in records[0]), subject=2)], method=method)

    def unpack(u):
        return jnp.stack([jnp.exp(u[0]), 10.0, 0.02]), jnp.exp(u[1]).reshape(1, 1), {"cp": {"add": jnp.exp(u[2]), "prop": jnp.exp(u[3])}}

    def ofv(u):
        theta, omega, err = unpack(jnp.asarray(u))
        return ml.modes(np.asarray(theta), np.asarray(omega), {"cp": {k: float(v) for k, v in err["cp"].items()}}, tol=1e-14)

    u = np.array([math.log(0.25), math.log(0.2), math.log(0.2), math.log(0.1)])
    modes = ofv(u)
    obj, jac = ml.objective_and_gradient(unpack, u, modes.eta)
    np.testing.assert_allclose(obj, modes.obj, rtol=1e-12)
    h = 1e-5
    fd = np.array([(ofv(u + e).ofv - ofv(u - e).ofv) / (2 * h) for e in np.eye(4) * h])
    np.testing.assert_allclose(jac.sum(axis=0), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["focei", "laplace"])
def test_gradient_with_two_random_effects_and_a_parameter_without_one(method):
    """As above with two random effects (k and v) and an estimated typical value without one
    (lam, which only the event row informs): every block of the Taylor polynomial the
    gradient reads (mixed second and, for Laplace, third derivatives with two random
    effects and lam) is exercised, against central differences of the OFV."""
    import jax.numpy as jnp

    spec = {**BOLUS, "parameters": {**BOLUS["parameters"], "v": {**BOLUS["parameters"]["v"], "iiv": {"kind": "lognormal", "omega": 0.2}}}}
    records = _records(method == "laplace")
    ml = MarginalLikelihood(il2pkpd.build_model(spec), records + [Records(tuple(replace_dv(r, 0.8) for r in records[0]), subject=2)], method=method)

    def unpack(u):
        return jnp.exp(u[:3]), jnp.diag(jnp.exp(u[3:5])), {"cp": {"add": jnp.exp(u[5]), "prop": jnp.exp(u[6])}}

    def ofv(u):
        theta, omega, err = unpack(jnp.asarray(u))
        return ml.modes(np.asarray(theta), np.asarray(omega), {"cp": {k: float(v) for k, v in err["cp"].items()}}, tol=1e-14)

    u = np.log([0.25, 9.0, 0.03, 0.2, 0.05, 0.2, 0.1])
    modes = ofv(u)
    obj, jac = ml.objective_and_gradient(unpack, u, modes.eta)
    np.testing.assert_allclose(obj, modes.obj, rtol=1e-12)
    h = 1e-5
    fd = np.array([(ofv(u + e).ofv - ofv(u - e).ofv) / (2 * h) for e in np.eye(u.size) * h])
    np.testing.assert_allclose(jac.sum(axis=0), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["focei", "laplace"])
def test_mode_sensitivity_equals_central_differences_of_the_modes_solved_again(method):
    """``d eta*_i / du`` by the implicit function theorem (one forward pass) against central
    differences of the conditional modes, each point's modes found again by Newton's method
    from scratch (the mode is the method's, whatever its Hessian; Laplace with the M3 and event
    rows, from the second-order polynomial all the same)."""
    import jax.numpy as jnp

    records = _records(method == "laplace")
    ml = MarginalLikelihood(_model(), records + [Records(tuple(replace_dv(r, 0.8) for r in records[0]), subject=2)], method=method)

    def unpack(u):
        return jnp.stack([jnp.exp(u[0]), 10.0, 0.02]), jnp.exp(u[1]).reshape(1, 1), {"cp": {"add": jnp.exp(u[2]), "prop": jnp.exp(u[3])}}

    def eta_at(u):
        theta, omega, err = unpack(jnp.asarray(u))
        return ml.modes(np.asarray(theta), np.asarray(omega), {"cp": {k: float(v) for k, v in err["cp"].items()}}, tol=1e-14).eta

    u = np.array([math.log(0.25), math.log(0.2), math.log(0.2), math.log(0.1)])
    sens = ml.mode_sensitivity(unpack, u, eta_at(u))
    assert sens.shape == (2, 1, 4)
    h = 1e-5
    fd = np.stack([(eta_at(u + e) - eta_at(u - e)) / (2 * h) for e in np.eye(4) * h], axis=-1)
    np.testing.assert_allclose(sens, fd, rtol=1e-5, atol=1e-7)
    # the typical value moves the modes the other way (eta is a deviation from it), all of it
    # for a subject whose data fix its individual value: d eta / d log k is near -1
    assert -1.0 < sens[0, 0, 0] < -0.5


def replace_dv(record: Record, factor: float) -> Record:
    """The record with its DV scaled (a second subject with other data)."""
    from dataclasses import replace

    return replace(record, dv=record.dv * factor) if record.evid == 0 and not record.cens and not record.event else record


@pytest.mark.parametrize("method", ["focei", "foce"])
def test_cwres_of_the_linear_gaussian_model_are_the_decorrelated_residuals(method, linear_growth):
    """CWRES as Hooker et al. (2007) define them (xpose4's ind.cwres): COV^-1/2 (y - E) with
    COV = G Omega G' + sigma^2 I and E = IPRED - G eta = X beta for this linear model, the
    symmetric square root from scipy.linalg.sqrtm; PRED = X beta, IWRES = (y - IPRED)/sigma."""
    import scipy.linalg

    model = il2pkpd.build_model(linear_growth)
    rng = np.random.default_rng(7)
    t = np.array([0.0, 1.0, 3.0, 6.0])
    subjects, ys = [], []
    for i in range(3):
        y = 10.0 + rng.normal(0, 2.0) + (0.5 + rng.normal(0, 0.3)) * t + rng.normal(0, 1.0, t.size)
        subjects.append(Records(tuple(Record(time=float(tt), evid=0, dvid=1, dv=float(v), row=j) for j, (tt, v) in enumerate(zip(t, y))), subject=i + 1))
        ys.append(y)
    omega, theta, sigma = np.array([[3.0, 0.2], [0.2, 0.05]]), np.array([9.0, 0.6]), 1.3
    ml = MarginalLikelihood(model, subjects, method=method)
    modes = ml.modes(theta, omega, {"y": {"add": sigma}})
    res = ml.residuals(theta, omega, {"y": {"add": sigma}}, modes.eta)
    x = np.column_stack([np.ones_like(t), t])
    cov = x @ omega @ x.T + sigma**2 * np.eye(t.size)
    for i, y in enumerate(ys):
        np.testing.assert_allclose(res["CWRES"][i, :4], np.linalg.solve(scipy.linalg.sqrtm(cov).real, y - x @ theta), atol=1e-8)
        np.testing.assert_allclose(res["PRED"][i, :4], x @ theta, atol=1e-9)
        np.testing.assert_allclose(res["IWRES"][i, :4], (y - x @ (theta + modes.eta[i])) / sigma, atol=1e-8)
