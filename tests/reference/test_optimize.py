"""Regimen optimisation (issue 15) against closed forms.

pk1_oral (ADVAN2; ka = 1/h, CL = 1 L/h, V = 20 L, F = 1; k = CL/V):

* one oral dose D: C(t) = D ka / (V (ka - k)) (e^{-kt} - e^{-ka t}), tmax = ln(ka/k)/(ka - k),
  AUC(0, T) from integrating the exponentials: the dose reaching a target Cmax or AUC is the
  target divided by the value per mg (linear PK);
* at steady state (dose D every tau), C_ss(t) = D ka / (V (ka - k)) (e^{-kt}/(1 - e^{-k tau})
  - e^{-ka t}/(1 - e^{-ka tau})) on [0, tau], trough C_ss(0), peak at
  ln(ka (1 - e^{-k tau}) / (k (1 - e^{-ka tau}))) / (ka - k). The trough at a given peak falls
  as tau grows, so the largest trough under a peak cap is at the shortest interval allowed,
  with the dose that puts the peak on the cap;
* with IIV on CL only, each virtual subject's Cmax is the closed form at its own CL, so the
  probability of a target is a count over the subjects (their CL from the same random
  effects).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

import il2pkpd
from il2pkpd.design.optimize import optimize_regimen
from il2pkpd.design.sweep import random_effects
from il2pkpd.errors import OptionError

KA, CL, V = 1.0, 1.0, 20.0
K = CL / V
FINE = np.arange(0.0, 8.0, 0.05) / 24.0  # output times after each dose, days (every 3 min for 8 h)


def conc(t, dose, k=K):
    return dose * KA / (V * (KA - k)) * (np.exp(-k * t) - np.exp(-KA * t))


def auc(a, b, dose):
    c = dose * KA / (V * (KA - K))
    return c * ((np.exp(-K * a) - np.exp(-K * b)) / K - (np.exp(-KA * a) - np.exp(-KA * b)) / KA)


def c_ss(t, dose, tau):
    return dose * KA / (V * (KA - K)) * (math.exp(-K * t) / (1 - math.exp(-K * tau)) - math.exp(-KA * t) / (1 - math.exp(-KA * tau)))


def peak_ss(dose, tau):
    t = math.log(KA * (1 - math.exp(-K * tau)) / (K * (1 - math.exp(-KA * tau)))) / (KA - K)
    return c_ss(t, dose, tau)


@pytest.fixture(scope="module")
def pk():
    return il2pkpd.load_model("pk1_oral")


def test_dose_for_a_target_cmax_is_the_closed_form(pk):
    tmax = math.log(KA / K) / (KA - K)
    r = optimize_regimen(pk, objective="minimise total_dose", constraints=["E(cmax(cp)) >= 5"], space="dose=10..500",
                         regimen="{dose} mg po", horizon=24.0, grid_step=1.0, dose_offsets=FINE)
    assert float(r.values["dose"]) == pytest.approx(5.0 / conc(tmax, 1.0), rel=1e-4)
    assert r.feasible and r.constraints[0]["active"] and r.constraints[0]["value"] == pytest.approx(5.0, rel=1e-6)
    assert r.regimen == f"{r.values['dose']} mg po"


def test_dose_for_a_target_auc_is_the_closed_form(pk):
    # trapezoids on a 0.02 h grid: (b - a) h^2 max|C''| / 12 / AUC < 1e-5 here
    r = optimize_regimen(pk, objective="minimise total_dose", constraints=["E(auc(cp, 0, 48)) >= 80"], space="dose=10..500",
                         regimen="{dose} mg po", horizon=48.0, grid_step=0.02, dose_offsets=[0.0])
    assert float(r.values["dose"]) == pytest.approx(80.0 / auc(0.0, 48.0, 1.0), rel=1e-4)


def test_largest_steady_state_trough_under_a_peak_cap(pk):
    """Over dose and interval: the optimum is the shortest interval (6 h) with the peak on the
    cap (two active constraints: the cap and the interval's bound). 40 doses reach steady
    state (14 half-lives before the window) to 1e-5; the window holds a whole interval."""
    cap, tau = 10.0, 6.0
    dose = cap / peak_ss(1.0, tau)
    r = optimize_regimen(pk, objective="maximise E(min(cp, 200, 230))", constraints=[f"E(cmax(cp, 200, 230)) <= {cap}"],
                         space="dose=10..500; interval=6..24h", regimen="{dose} mg po q{interval} x40", horizon=240.0,
                         grid_step=1.0, dose_offsets=FINE[:120])
    assert float(r.values["interval"][:-1]) == pytest.approx(tau, rel=1e-3)
    assert float(r.values["dose"]) == pytest.approx(dose, rel=1e-3)
    assert r.objective["value"] == pytest.approx(c_ss(0.0, dose, tau), rel=1e-3)
    assert r.constraints[0]["active"] and r.constraints[0]["satisfied"]


def test_probability_constraint_reports_the_exact_probability(pk):
    """P(Cmax >= c) >= 0.8 over 60 virtual subjects with IIV on CL: the reported probability
    is the count of subjects whose closed-form Cmax reaches c, the constraint holds, and the
    dose is at most 5% above the smallest dose that satisfies it exactly (smoothing costs a
    little optimality, never feasibility)."""
    n, c, seed = 60, 4.0, 3
    r = optimize_regimen(pk, {"omega_ka": 0.0, "omega_v": 0.0}, objective="minimise total_dose", constraints=[f"P(cmax(cp) >= {c}) >= 0.8"],
                         space="dose=10..500", regimen="{dose} mg po", horizon=12.0, subjects=n, seed=seed, grid_step=1.0, dose_offsets=FINE)
    z = random_effects(seed, np.arange(1), n, len(pk.parameters))[0]
    k_i = CL * np.exp(0.3 * z[:, pk.parameter_names.index("cl")]) / V
    cmax_per_mg = conc(np.log(KA / k_i) / (KA - k_i), 1.0, k_i)
    dose = float(r.values["dose"])
    assert r.constraints[0]["value"] == pytest.approx(np.mean(dose * cmax_per_mg >= c), abs=1e-12)
    assert r.constraints[0]["satisfied"] and r.feasible
    smallest = np.sort(c / cmax_per_mg)[math.ceil(0.8 * n) - 1]
    assert smallest <= dose <= 1.05 * smallest
    q = r.quantities[1]
    assert q["mc_se"] == pytest.approx(math.sqrt(q["mean"] * (1 - q["mean"]) * n / (n - 1) / n), rel=1e-9)  # binomial SE over subjects


def test_discrete_choices_and_counts_are_enumerated(pk):
    """An interval list and a count range: every combination is a candidate; a count of 0
    drops its block; the best feasible candidate is the result."""
    r = optimize_regimen(pk, objective="maximise E(min(cp, 200, 230))", constraints=["E(cmax(cp, 200, 230)) <= 10"],
                         space="dose=10..500; interval=6h,12h; load=0..1", regimen="{dose} mg po x{load} then {dose} mg po q{interval} x40",
                         horizon=240.0, grid_step=1.0, dose_offsets=FINE[:120])
    assert len(r.candidates) == 4
    texts = [c["regimen"] for c in r.candidates]
    assert sum("then" not in t for t in texts) == 2  # load = 0: one block
    assert r.values["interval"] == "6h"
    best = max((c for c in r.candidates if c["feasible"]), key=lambda c: c["objective"])
    assert r.regimen == best["regimen"]
    assert r.objective["value"] == pytest.approx(c_ss(0.0, 10.0 / peak_ss(1.0, 6.0), 6.0), rel=1e-3)


def test_gradient_through_dose_times_matches_finite_differences(pk):
    """d(quantity)/d(interval) and d/d(dose) from JAX through the solver's adjoint, against
    central differences of the same compiled function."""
    from il2pkpd.design.criteria import parse_objective
    from il2pkpd.design.optimize import _Problem
    from il2pkpd.design.regimen_space import RegimenSpace
    from il2pkpd.solve import SolverOptions

    space = RegimenSpace("{dose} mg po q{interval} x6", "dose=50..150; interval=6..12h")
    q = parse_objective("maximise E(auc(cp, 20, 40))", pk).quantity
    theta = np.array([[p.value for p in pk.parameters]])
    prob = _Problem(pk, space, [space.structure(pk, {})], [q], q.metrics(), 48.0, np.arange(0, 48, 0.25), np.arange(0, 8, 0.5) / 24, theta,
                    SolverOptions(solver="rodas4", rtol=1e-10, atol=1e-12))
    z = jnp.asarray([0.3, 0.6])
    g = np.asarray(prob._jacobian(z, 0, 0.05))[0]
    h = 1e-5
    fd = [(float(prob._smooth(z.at[j].add(h), 0, 0.05)[0]) - float(prob._smooth(z.at[j].add(-h), 0, 0.05)[0])) / (2 * h) for j in range(2)]
    np.testing.assert_allclose(g, fd, rtol=1e-4)


@pytest.mark.parametrize("kw, match", [
    ({"objective": "P(cmax(cp) >= 4)"}, "must start with maximise or minimise"),
    ({"constraints": ["E(cmax(cp)) < 5"]}, "use <= or >="),
    ({"constraints": ["E(cmax(conc)) <= 5"]}, "'conc' is not an output"),
    ({"space": "dose=10..500; n=1..3"}, r"does not use"),
    ({"regimen": "{dose} mg po q{interval}"}, r"does not give"),
    ({"regimen": "{dose} mg po x{n}", "space": "dose=10..500; n=1..3.5h"}, "must hold integers"),
    ({"regimen": "{dose} mg iv over {dur} x1", "space": "dose=10..500; dur=1h..2h"}, "linearly|structure"),
    ({"objective": "maximise E(hr(mi, 10))"}, "not an event|hr"),
    ({"temperature": 0.0}, "temperature"),
    ({"constraints": ["E(cmax(cp, 0, 30)) <= 5"]}, "beyond the horizon"),
])
def test_bad_input_is_refused_naming_it(pk, kw, match):
    args = {"objective": "minimise total_dose", "constraints": ["E(cmax(cp)) >= 5"], "space": "dose=10..500", "regimen": "{dose} mg po",
            "horizon": 24.0} | kw
    with pytest.raises(OptionError, match=match):
        optimize_regimen(pk, **args)


def test_cli_optimize_writes_the_result_and_refuses_bad_input(tmp_path):
    import json

    from typer.testing import CliRunner

    from il2pkpd.cli import app

    out = tmp_path / "opt.json"
    args = ["optimize", "--model", "pk1_oral", "--objective", "minimise total_dose", "--constraint", "E(cmax(cp)) >= 5", "--space", "dose=10..500",
            "--regimen", "{dose} mg po", "--horizon", "24", "--grid-step", "1", "--dose-offsets", ",".join(f"{h:g}" for h in np.arange(0, 8, 0.05))]
    r = CliRunner().invoke(app, args + ["--out", str(out)])
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    tmax = math.log(KA / K) / (KA - K)
    assert float(result["values"]["dose"]) == pytest.approx(5.0 / conc(tmax, 1.0), rel=1e-4)
    assert "output grid" in r.output
    bad = CliRunner().invoke(app, args + ["--out", str(tmp_path / "opt.csv")])
    assert bad.exit_code == 2 and "--out" in bad.output
    bad = CliRunner().invoke(app, [a if a != "dose=10..500" else "dose=500..10" for a in args] + ["--out", str(out)])
    assert bad.exit_code == 2 and "LO < HI" in bad.output


def test_default_regimen_is_the_sweeps_flag_regimen(pk):
    """Without a template, dose x interval x induction make the sweep's flag regimens (one
    source: flag_regimen), and the space names nothing else."""
    from il2pkpd.design.regimen_space import format_number
    from il2pkpd.design.sweep_design import flag_regimen

    r = optimize_regimen(pk, objective="minimise total_dose", constraints=["E(cmax(cp)) >= 5"], space="dose=10..500 mg; interval=12h,1d; induction=0..1",
                         horizon=24.0 * 21, grid_step=6.0, duration="2w")
    assert len(r.candidates) == 4
    for c in r.candidates:
        assert c["regimen"] == flag_regimen(format_number(c["dose"]) + "mg", c["interval"], induction=int(c["induction"]), duration="2w")
    assert r.regimen == min((c for c in r.candidates if c["feasible"]), key=lambda c: c["objective"])["regimen"]
    with pytest.raises(OptionError, match="must be a list"):
        optimize_regimen(pk, objective="minimise total_dose", constraints=["E(cmax(cp)) >= 5"], space="dose=10..500 mg; interval=12h..24h", horizon=48.0)
    with pytest.raises(OptionError, match="dose required"):
        optimize_regimen(pk, objective="minimise total_dose", constraints=["E(cmax(cp)) >= 5"], space="dose=10..500 mg; n=1..3", horizon=48.0)


def test_a_search_that_stops_short_is_said_to(pk, monkeypatch):
    """When SLSQP does not report success at the final temperature (here forced: its result
    is kept, its success flag cleared, as after "Positive directional derivative for
    linesearch" on a flat smoothed probability), the result is the best point found, labelled
    so (warning and ``converged`` False), never a silent optimum."""
    import scipy.optimize

    from il2pkpd.errors import Il2pkpdWarning

    real = scipy.optimize.minimize

    def stalled(*a, **k):
        res = real(*a, **k)
        res.success, res.message = False, "Positive directional derivative for linesearch"
        return res

    monkeypatch.setattr(scipy.optimize, "minimize", stalled)
    with pytest.warns(Il2pkpdWarning, match="did not converge.*Positive directional"):
        r = optimize_regimen(pk, objective="minimise total_dose", constraints=["E(cmax(cp)) >= 5"], space="dose=10..500",
                             regimen="{dose} mg po", horizon=24.0)
    assert r.candidates[0]["converged"] is False
