"""A Laplace fit with time-to-event rows (issue 14) against the same objective written in SciPy.

A one-compartment bolus model in closed form, ``C = D/V exp(-k t)``, with log-normal IIV on
``k``, four concentrations per subject (combined error) and one time-to-event row whose hazard
is ``lam * C(t)`` (an event before 24 h, or right-censored there): the cumulative hazard is
``lam D / (V k) (1 - exp(-k t))``. Every subject's Laplace objective
``l_i(eta*) + log omega^2 + log(l_i''(eta*) / 2)`` is computed with NumPy and
``scipy.optimize.minimize_scalar`` (the mode; ``l_i''`` by central differences), summed, and
minimised by ``scipy.optimize.minimize`` (Nelder-Mead, no gradient): il2pkpd's Laplace
estimates and OFV must match that minimum. The data are SYNTHETIC (simulated here).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize

import il2pkpd
from il2pkpd.dosing import Record, Records

BOLUS = {
    "model": {"name": "bolus_tte_fit", "time_unit": "h"},
    "parameters": {
        "k": {"value": 0.25, "unit": "1/h", "lower": 0.0, "iiv": {"kind": "lognormal", "omega": 0.4}},
        "v": {"value": 10.0, "unit": "L", "lower": 0.0, "fixed": True},
        "lam": {"value": 0.03, "unit": "L/mg/h", "lower": 0.0},
    },
    "states": {"center": {"unit": "mg", "dose": True}},
    "odes": {"center": "-k*center"},
    "outputs": {"cp": {"expr": "center/v", "unit": "mg/L"}},
    "observations": {"cp": {"output": "cp", "dvid": 1, "error": {"model": "combined", "add": 0.2, "prop": 0.15}}},
    "events": {"mi": {"hazard": "lam*center/v"}},
}
DOSE, V, T_END = 100.0, 10.0, 24.0
TIMES = np.array([1.0, 2.0, 4.0, 8.0])
TRUE = {"k": 0.2, "lam": 0.012, "omega2_k": 0.3**2, "add": 0.15, "prop": 0.12}


def _simulate(n: int, seed: int):
    """(times, DVs, event time, event flag) per subject, from the closed form."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = TRUE["k"] * math.exp(rng.normal(0.0, math.sqrt(TRUE["omega2_k"])))
        f = DOSE / V * np.exp(-k * TIMES)
        y = f + rng.normal(0.0, 1.0, TIMES.size) * np.sqrt(TRUE["add"] ** 2 + TRUE["prop"] ** 2 * f**2)
        # invert the cumulative hazard at an Exp(1) draw; beyond its limit or 24 h: censored
        e, limit = rng.exponential(), TRUE["lam"] * DOSE / (V * k)
        t_event = -math.log(1.0 - e / limit) / k if e < limit else math.inf
        out.append((y, min(t_event, T_END), t_event <= T_END))
    return out


def _records(subjects) -> list[Records]:
    data = []
    for i, (y, t_event, event) in enumerate(subjects):
        rows = [Record(time=0.0, evid=1, amt=DOSE, cmt=1, row=0)]
        rows += [Record(time=float(t), evid=0, dvid=1, dv=float(v), row=j + 1) for j, (t, v) in enumerate(zip(TIMES, y))]
        rows.append(Record(time=float(t_event), evid=0, event="mi", dv=1.0 if event else 0.0, row=len(TIMES) + 1))
        data.append(Records(tuple(sorted(rows, key=lambda r: (r.time, r.row))), subject=i + 1))
    return data


def _ofv_scipy(params, subjects) -> float:
    """The Laplace OFV (NONMEM's: -2 log-likelihood without n log 2 pi) in NumPy/SciPy."""
    k_pop, lam, omega2, add, prop = params

    def l_fn(eta, y, t_event, event):
        k = k_pop * math.exp(eta)
        f = DOSE / V * np.exp(-k * TIMES)
        var = add**2 + prop**2 * f**2
        d = float(np.sum(np.log(var) + (y - f) ** 2 / var))
        cumhaz = lam * DOSE / (V * k) * (1.0 - math.exp(-k * t_event))
        log_h = math.log(lam * DOSE / V) - k * t_event
        d -= 2.0 * ((log_h if event else 0.0) - cumhaz)
        return d + eta**2 / omega2

    total = 0.0
    for y, t_event, event in subjects:
        def fn(e, y=y, t_event=t_event, event=event):
            return l_fn(e, y, t_event, event)

        eta = scipy.optimize.minimize_scalar(fn, bounds=(-4.0, 4.0), method="bounded", options={"xatol": 1e-12}).x
        h = 1e-4
        second = (fn(eta + h) - 2.0 * fn(eta) + fn(eta - h)) / h**2
        total += fn(eta) + math.log(omega2) + math.log(second / 2.0)
    return total


def test_laplace_fit_with_event_rows_matches_scipy_minimising_the_same_objective():
    subjects = _simulate(24, seed=11)
    assert 4 <= sum(ev for _, _, ev in subjects) <= 20  # events and censored rows both present
    fit = il2pkpd.fit(il2pkpd.build_model(BOLUS), _records(subjects), method="laplace")
    got = fit.estimates
    start = np.log([0.25, 0.03, 0.16, 0.2, 0.15])  # the model file's values, as the fit starts
    ref = scipy.optimize.minimize(lambda x: _ofv_scipy(np.exp(x), subjects), start, method="Nelder-Mead",
                                  options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 20000, "maxfev": 20000})
    assert ref.success
    expected = dict(zip(["k", "lam", "omega_k", "sigma_cp_add", "sigma_cp_prop"], np.exp(ref.x)))
    expected["omega_k"] = math.sqrt(expected["omega_k"])
    assert fit.info["ofv"] == pytest.approx(ref.fun, abs=1e-3)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=2e-3), name
