"""Sweep metrics against closed forms.

pk1_oral after one oral bolus D (ADVAN2; ka = 1/h, CL = 1 L/h, V = 20 L, F = 1):
C(t) = D ka / (V (ka - k)) (exp(-k t) - exp(-ka t)), k = CL/V, so
tmax = ln(ka/k)/(ka - k), Cmax = C(tmax), AUC(0, T) by integrating the exponentials, and
the times C crosses a level by root finding on the closed form (scipy.optimize.brentq).
The helpers _extremum and _time_above are checked on a parabola and a straight line.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import il2pkpd
from il2pkpd.design.metrics import _extremum, _time_above, output_grid, parse_metric, parse_target
from il2pkpd.errors import OptionError

D, KA, CL, V = 100.0, 1.0, 1.0, 20.0
K = CL / V


def conc(t):
    return D * KA / (V * (KA - K)) * (np.exp(-K * t) - np.exp(-KA * t))


def auc(a, b):
    c = D * KA / (V * (KA - K))
    return c * ((np.exp(-K * a) - np.exp(-K * b)) / K - (np.exp(-KA * a) - np.exp(-KA * b)) / KA)


@pytest.fixture(scope="module")
def pk_result():
    design = il2pkpd.SweepDesign(
        "pk1_oral", (("single", "100 mg po once"),), horizon=48.0, dense_step=0.1, grid_step=0.1,
        metrics=("cmax(cp)", "tmax(cp)", "auc(cp)", "auc(cp, 2, 10)", "above(cp, 3)", "at(cp, 10)", "change(cp, 24)", "min(cp)",
                 "cmax(cp, 10, 20)", "tmax(cp, 10, 20)", "min(cp, 1, 5)", "cmax(cp, 2, 30)"),
        targets=("cmax(cp) >= 4 & above(cp, 3) > 20",), solver="tsit5", rtol=1e-9, atol=1e-12,
    )
    return il2pkpd.sweep(design).table.iloc[0]


def test_cmax_and_tmax_match_the_closed_form(pk_result):
    tmax = math.log(KA / K) / (KA - K)
    assert pk_result["tmax(cp)"] == pytest.approx(tmax, abs=2e-3)  # parabola through 0.1 h samples
    assert pk_result["cmax(cp)"] == pytest.approx(conc(tmax), rel=1e-5)


def test_auc_and_values_at_times_match_the_closed_form(pk_result):
    # trapezoid error on a 0.1 h grid: (b - a) h^2 max|C''| / 12 < 1e-3 relative here
    assert pk_result["auc(cp)"] == pytest.approx(auc(0.0, 48.0), rel=1e-3)
    assert pk_result["auc(cp, 2, 10)"] == pytest.approx(auc(2.0, 10.0), rel=1e-3)
    assert pk_result["at(cp, 10)"] == pytest.approx(conc(10.0), rel=1e-7)
    assert pk_result["change(cp, 24)"] == pytest.approx(conc(24.0) - 0.0, rel=1e-7)
    assert pk_result["min(cp)"] == pytest.approx(0.0, abs=1e-12)  # before the dose is absorbed


def test_windowed_extrema_match_the_closed_form(pk_result):
    """Over a window, the extremum is the closed form's: at the window's end where C is
    monotone there (no parabola across the window's edge), at the peak where it is inside."""
    tmax = math.log(KA / K) / (KA - K)
    assert pk_result["cmax(cp, 10, 20)"] == pytest.approx(conc(10.0), rel=1e-7)  # falling after tmax = 3.2 h
    assert pk_result["tmax(cp, 10, 20)"] == pytest.approx(10.0, abs=1e-9)
    assert pk_result["min(cp, 1, 5)"] == pytest.approx(min(conc(1.0), conc(5.0)), rel=1e-7)
    assert pk_result["cmax(cp, 2, 30)"] == pytest.approx(conc(tmax), rel=1e-5)


def test_cmax_after_iv_boluses_is_not_interpolated_across_a_dose():
    """IV bolus q12h x3 (pk1_oral, CMT 2): the peak is the value right after the last dose,
    C = (D/V) sum_k exp(-k (24 - 12 k)), at t = 24 h (closed form by superposition); a
    parabola through the pre-dose sample, the dose time and the next one would overshoot."""
    design = il2pkpd.SweepDesign(
        "pk1_oral", (("iv", "100 mg iv q12h x3"),), horizon=36.0, dense_step=1.0, grid_step=1.0,
        metrics=("cmax(cp)", "tmax(cp)"), solver="tsit5", rtol=1e-10, atol=1e-12,
    )
    row = il2pkpd.sweep(design).table.iloc[0]
    peak = D / V * sum(math.exp(-K * (24.0 - 12.0 * k)) for k in range(3))
    assert row["cmax(cp)"] == pytest.approx(peak, rel=1e-7)
    assert row["tmax(cp)"] == pytest.approx(24.0, abs=1e-9)


def test_time_above_a_level_matches_root_finding(pk_result):
    tmax = math.log(KA / K) / (KA - K)
    up = brentq(lambda t: conc(t) - 3.0, 0.0, tmax)
    down = brentq(lambda t: conc(t) - 3.0, tmax, 48.0)
    assert pk_result["above(cp, 3)"] == pytest.approx(down - up, abs=2e-3)  # linear interpolation at crossings


def test_extremum_is_exact_for_a_parabola_on_an_uneven_grid():
    t = jnp.array([0.0, 0.7, 1.1, 2.6, 3.0, 4.5])
    peak, when = _extremum(t, 5.0 - 2.0 * (t - 2.2) ** 2)
    assert float(when) == pytest.approx(2.2, abs=1e-12) and float(peak) == pytest.approx(5.0, abs=1e-12)
    peak, when = _extremum(t, t)  # monotone: the last sample
    assert float(when) == 4.5 and float(peak) == 4.5
    padded = jnp.array([0.0, 1.0, 2.0, 2.0, 2.0])  # padding repeats the last time
    peak, when = _extremum(padded, jnp.array([0.0, 1.0, 2.0, 2.0, 2.0]))
    assert float(peak) == 2.0 and np.isfinite(float(when))


def test_time_above_is_exact_for_a_straight_line():
    t = jnp.linspace(0.0, 10.0, 7)
    assert float(_time_above(t, 2.0 * t, 5.0)) == pytest.approx(7.5, abs=1e-12)  # 2t > 5 for t in (2.5, 10]


def test_grid_holds_the_doses_their_offsets_and_the_metric_times():
    g = output_grid([0.0, 7.0], 60.0, step=7.0, dense_step=1.0, extra=[33.3])
    assert {0.0, 7.0, 33.3, 60.0} <= set(g.tolist())
    assert np.all(np.diff(g) > 0) and g[0] == 0.0 and g[-1] == 60.0
    assert np.all(np.diff(g[g <= 21.0]) <= 1.0 + 1e-12)  # daily through the last dose + 14 days


@pytest.mark.parametrize(("text", "match"), [
    ("peak(cp)", "unknown kind 'peak'"),
    ("cmax(conc)", "'conc' is not an output of model 'pk1_oral'"),
    ("at(cp)", "at takes 1 number"),
    ("auc(cp, 5, 2)", "needs 0 <= a < b"),
    ("risk(cp, 10)", "'cp' is not an event"),
    ("cmax cp", "must look like KIND"),
])
def test_bad_metrics_are_named_in_the_error(text, match):
    with pytest.raises(OptionError, match=match):
        parse_metric(text, il2pkpd.load_model("pk1_oral"))


def test_targets_combine_clauses():
    t = parse_target("cmax(cp) >= 4 & above(cp, 3) > 20", il2pkpd.load_model("pk1_oral"))
    ok = t.holds({"cmax(cp)": np.array([5.0, 5.0, 3.0]), "above(cp, 3)": np.array([21.0, 19.0, 30.0])})
    np.testing.assert_array_equal(ok, [True, False, False])
    with pytest.raises(OptionError, match="METRIC OP NUMBER"):
        parse_target("cmax(cp) = 4", il2pkpd.load_model("pk1_oral"))
