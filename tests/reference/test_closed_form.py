"""Closed-form checks of the JAX solver at default tolerances (relative error <= 1e-6).

Oracles: the Bateman function for 1-compartment oral absorption (with lag and F), its
ka = k limit F*D*k*t*exp(-k t)/V, IV bolus D/V*exp(-k t), zero-order infusion
R/CL*(1 - exp(-k t)), superposition for repeated doses, geometric-series steady states
(SS=1) for oral boluses and infusions, and the exact matrix exponential of the linear
2-compartment oral system.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

import il2pkpd
from il2pkpd.dosing import Record, Records

REL = 1e-6


def assert_close(got, want, rel=REL):
    got, want = np.asarray(got), np.asarray(want)
    floor = 1e-9 * np.max(np.abs(want))  # points where the exact value is ~0 (t = 0)
    err = np.abs(got - want) / np.maximum(np.abs(want), floor)
    i = int(np.argmax(err))
    assert err.max() <= rel, f"max relative error {err.max():.2e} at index {i}: {got[i]!r} vs {want[i]!r}"


def run(model, records, times, **params):
    ds = il2pkpd.simulate(model, [Records(records, subject=1)], np.asarray(times, float), params=params)
    return ds["cp"].values[0]


def bateman(t, dose, f, ka, k, v, tlag=0.0):
    tt = np.clip(t - tlag, 0, None)
    return f * dose * ka / (v * (ka - k)) * (np.exp(-k * tt) - np.exp(-ka * tt))


T = np.linspace(0, 72, 145)


def test_one_compartment_oral_matches_bateman(pk1):
    got = run(pk1, [Record(0, 1, 100.0, 1)], T, ka=1.3, cl=2.0, v=25.0)
    assert_close(got, bateman(T, 100.0, 1.0, 1.3, 2.0 / 25.0, 25.0))


def test_lag_and_bioavailability_shift_and_scale_the_oral_curve(pk1):
    got = run(pk1, [Record(0, 1, 100.0, 1)], T, ka=0.9, cl=2.0, v=25.0, alag1=1.75, f1=0.62)
    assert_close(got, bateman(T, 100.0, 0.62, 0.9, 0.08, 25.0, tlag=1.75))


def test_ka_equal_to_k_gives_the_limit_form(pk1):
    k, v = 0.1, 10.0
    got = run(pk1, [Record(0, 1, 50.0, 1)], T, ka=k, cl=k * v, v=v)
    assert_close(got, 50.0 * k * T * np.exp(-k * T) / v)


def test_iv_bolus_decays_monoexponentially(pk1):
    got = run(pk1, [Record(0, 1, 80.0, 2)], T, cl=3.0, v=30.0)
    assert_close(got, 80.0 / 30.0 * np.exp(-0.1 * T))


def test_iv_infusion_rises_then_decays(pk1):
    cl, v, rate, dur = 3.0, 30.0, 20.0, 5.0
    k = cl / v
    want = np.where(T <= dur, rate / cl * (1 - np.exp(-k * T)), rate / cl * (1 - np.exp(-k * dur)) * np.exp(-k * (T - dur)))
    got = run(pk1, [Record(0, 1, rate * dur, 2, rate=rate)], T, cl=cl, v=v)
    assert_close(got, want)


def test_repeated_oral_doses_superpose(pk1):
    doses = [Record(12.0 * i, 1, 100.0, 1) for i in range(5)]
    want = sum(bateman(T - 12.0 * i, 100.0, 1.0, 1.1, 0.1, 20.0) * (T >= 12.0 * i) for i in range(5))
    assert_close(run(pk1, doses, T, ka=1.1, cl=2.0, v=20.0), want)


def test_oral_steady_state_matches_geometric_series(pk1):
    ka, cl, v, tau, dose = 0.8, 2.0, 20.0, 12.0, 100.0
    k = cl / v
    t = np.linspace(0, tau, 25)
    want = dose * ka / (v * (ka - k)) * (np.exp(-k * t) / (1 - np.exp(-k * tau)) - np.exp(-ka * t) / (1 - np.exp(-ka * tau)))
    # SS=1 dose at 0 with II=tau, then the next doses at tau, 2 tau ... (ADDL)
    got = run(pk1, [Record(0, 1, dose, 1, ii=tau, addl=3, ss=1)], t, ka=ka, cl=cl, v=v)
    assert_close(got, want)


def test_infusion_steady_state_matches_geometric_series(pk1):
    cl, v, rate, dur, tau = 3.0, 30.0, 10.0, 4.0, 24.0
    k = cl / v
    a_pre = rate / k * (1 - np.exp(-k * dur)) * np.exp(-k * (tau - dur)) / (1 - np.exp(-k * tau))
    t = np.linspace(0, tau, 49)
    amount = np.where(t <= dur, a_pre * np.exp(-k * t) + rate / k * (1 - np.exp(-k * t)),
                      (a_pre * np.exp(-k * dur) + rate / k * (1 - np.exp(-k * dur))) * np.exp(-k * (t - dur)))
    got = run(pk1, [Record(0, 1, rate * dur, 2, rate=rate, ii=tau, addl=2, ss=1)], t, cl=cl, v=v)
    assert_close(got, amount / v)


def test_two_compartment_oral_matches_matrix_exponential(pk2):
    ka, cl, v1, q, v2, dose = 0.7, 4.0, 15.0, 2.5, 40.0, 100.0
    a = np.array([[-ka, 0, 0], [ka, -(cl + q) / v1, q / v2], [0, q / v1, -q / v2]])
    want = np.array([(expm(a * t) @ np.array([dose, 0, 0]))[1] / v1 for t in T])
    ds = il2pkpd.simulate(pk2, [Records([Record(0, 1, dose, 1)], subject=1)], T, params=dict(ka=ka, cl=cl, v1=v1, q=q, v2=v2))
    assert_close(ds["cp"].values[0], want)


@pytest.mark.parametrize("solver", ["dopri5", "kvaerno5", "rodas4"])
def test_other_solvers_agree_with_closed_form(pk1, solver):
    ds = il2pkpd.simulate(pk1, "100 mg po once", T, params=dict(ka=1.3, cl=2.0, v=25.0), solver=solver)
    assert_close(ds["cp"].values[0], bateman(T, 100.0, 1.0, 1.3, 0.08, 25.0), rel=1e-5)
