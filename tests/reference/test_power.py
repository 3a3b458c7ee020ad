"""Power and assurance of virtual trials (issue 15) against textbook formulas and SciPy.

The model (tests/reference/data/two_arm.toml): y = base + effect * on, base ~ N(2, 0.3^2),
additive error SD 0.2, drug on from day 0 (effect -0.15); event hazard lam = 0.002/day,
times HR = exp(log_hr) = 0.7 once on, followed 730 days.

* t test of y at day 60: the difference of means of normal data, so power is exactly the
  noncentral t's: df = N - 2, ncp = 0.15 / sqrt(0.13 * (2/n)).
* ANCOVA on the baseline: Var(y60 | y0) = 0.13 (1 - rho^2), rho = 0.09 / 0.13; the noncentral t
  with df = N - 3 (the random baseline adds a factor 1 + 1/(N - 4) to the variance, which the
  oracle includes; Johnson & Kotz).
* log-rank: Schoenfeld (1981): power = Phi(sqrt(d / 4) |log HR| - z_{0.975}) with d the
  expected events, n (1 - e^{-lam T}) + n (1 - e^{-lam HR T}).

Each within 3 Monte Carlo SEs at 2,000 trials.
"""

from __future__ import annotations

import dataclasses

import math
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, stats

import il2pkpd
from il2pkpd.design import Arm, Sample, TrialDesign
from il2pkpd.design.analyses import ancova, logrank, mmrm, ttest
from il2pkpd.design.power import _crossing, _crossing_method, arm_sizes, trial_power
from il2pkpd.errors import OptionError

MODEL = Path(__file__).parent / "data" / "two_arm.toml"
OMEGA, SIGMA, EFFECT, LAM, HR, T = 0.3, 0.2, 0.15, 0.002, 0.7, 730.0
DESIGN = TrialDesign("two-arm", (Arm("drug", "1 mg po once", 1), Arm("placebo", None, 1)), (Sample("y", (0.0, 60.0)),),
                     followup=T, events=("mace",))
N_TRIALS = 2000


@pytest.fixture(scope="module")
def model():
    return il2pkpd.load_model(MODEL)


@pytest.fixture(scope="module")
def result(model):
    return trial_power(model, DESIGN, ["ttest(y, 60)", "ancova(y, 60)", "logrank(mace)"], [60, 200], n_trials=N_TRIALS, grid_step=10.0,
                       target=0.8)


def _row(result, analysis, n):
    t = result.table
    return t[(t["analysis"] == analysis) & (t["n_total"] == n)].iloc[0]


def _nct_power(ncp, df, alpha=0.05):
    c = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(c, df, ncp) + stats.nct.cdf(-c, df, ncp)


def test_t_test_power_is_the_noncentral_t(result):
    row = _row(result, "ttest(y, 60)", 60)
    var = OMEGA**2 + SIGMA**2
    expected = _nct_power(EFFECT / math.sqrt(var * 2 / 30), 58)
    assert row["quantity"] == "power" and row["trials"] == N_TRIALS and row["failed"] == 0
    assert abs(row["value"] - expected) < 3 * math.sqrt(expected * (1 - expected) / N_TRIALS)
    assert row["mc_se"] == pytest.approx(math.sqrt(row["value"] * (1 - row["value"]) / N_TRIALS))
    assert row["estimate_median"] == pytest.approx(-EFFECT, abs=0.01)


def test_ancova_power_is_the_noncentral_t_with_the_baseline_correlation(result):
    row = _row(result, "ancova(y, 60)", 60)
    var = OMEGA**2 + SIGMA**2
    rho = OMEGA**2 / var
    n_total = 60
    se = math.sqrt(var * (1 - rho**2) * (2 / 30) * (1 + 1 / (n_total - 4)))
    expected = _nct_power(EFFECT / se, n_total - 3)
    assert abs(row["value"] - expected) < 3 * math.sqrt(expected * (1 - expected) / N_TRIALS)
    assert row["value"] > _row(result, "ttest(y, 60)", 60)["value"] + 0.1  # the baseline adjustment pays


def test_log_rank_power_is_schoenfelds(result):
    row = _row(result, "logrank(mace)", 200)
    events = 100 * (1 - math.exp(-LAM * T)) + 100 * (1 - math.exp(-LAM * HR * T))
    expected = stats.norm.cdf(math.sqrt(events / 4) * abs(math.log(HR)) - stats.norm.ppf(0.975))
    assert abs(row["value"] - expected) < 3 * math.sqrt(expected * (1 - expected) / N_TRIALS)
    assert row["estimate"] == "hazard ratio" and row["estimate_median"] == pytest.approx(HR, abs=0.03)


def test_sample_size_for_a_target_is_read_off_the_curve(result):
    """Power rises with N, and N for 80% lies between the sizes that bracket it."""
    t = result.table[result.table["analysis"] == "ancova(y, 60)"].sort_values("n_total")
    assert list(t["value"]) == sorted(t["value"])
    n80 = result.sample_size[("ancova(y, 60)", "drug vs placebo")]
    lo, hi = t["value"].to_numpy()
    assert n80 == pytest.approx(60 + (0.8 - lo) / (hi - lo) * 140)
    assert _crossing(np.array([10, 20, 30]), np.array([0.2, 0.5, 0.9]), 0.7) == pytest.approx(25.0)  # halfway from 0.5 to 0.9
    assert _crossing(np.array([10, 20]), np.array([0.2, 0.5]), 0.9) is None
    # and says how: a grid whose first size already reaches the target bounds N from above only
    assert _crossing_method(np.array([10, 20, 30]), np.array([0.2, 0.5, 0.9]), 0.7) == "interpolated"
    assert _crossing(np.array([10, 20]), np.array([0.8, 0.9]), 0.7) == 10.0
    assert _crossing_method(np.array([10, 20]), np.array([0.8, 0.9]), 0.7) == "at or below the smallest size"
    assert _crossing_method(np.array([10, 20]), np.array([0.2, 0.5]), 0.9) == "not reached"
    assert result.sample_size_method[("ancova(y, 60)", "drug vs placebo")] == "interpolated"


def test_assurance_over_a_point_mass_posterior_is_power(model, result):
    """Five identical posterior draws: the trials see the same parameters, so assurance is the
    power, number for number (and is labelled assurance)."""
    point = {p.name: np.full(5, p.value) for p in model.parameters}
    a = trial_power(model, DESIGN, ["ttest(y, 60)"], [60], n_trials=200, params=point)
    p = trial_power(model, DESIGN, ["ttest(y, 60)"], [60], n_trials=200)
    assert a.table["quantity"].iloc[0] == "assurance" and p.table["quantity"].iloc[0] == "power"
    assert a.table["value"].iloc[0] == p.table["value"].iloc[0]
    assert a.table["mc_se"].iloc[0] == p.table["mc_se"].iloc[0] > 0


def test_assurance_is_below_power_when_the_effect_is_uncertain(model):
    """A posterior for the effect centred on the same value but spread across 0: assurance is
    lower than the power at the centre (power is not linear in the effect near 50%+)."""
    rng = np.random.default_rng(0)
    draws = {"effect": rng.normal(-0.15, 0.15, 50)}
    a = trial_power(model, DESIGN, ["ancova(y, 60)"], [200], n_trials=500, params=draws)
    p = trial_power(model, DESIGN, ["ancova(y, 60)"], [200], n_trials=500)
    assert a.table["value"].iloc[0] < p.table["value"].iloc[0] - 0.1


def test_analyses_agree_with_scipy():
    rng = np.random.default_rng(5)
    n = 40
    arm = np.tile(np.repeat([0.0, 1.0], n // 2), (3, 1))
    y0 = rng.normal(size=(3, n))
    y1 = 0.5 * y0 + 0.3 * arm + rng.normal(size=(3, n))
    est, se, p = ttest(y1, arm)
    ref = [stats.ttest_ind(y1[i, arm[i] == 1], y1[i, arm[i] == 0]) for i in range(3)]
    np.testing.assert_allclose(p, [r.pvalue for r in ref], rtol=1e-10)
    est, se, p = ancova(y0, y1, arm)
    for i in range(3):
        x = np.column_stack([np.ones(n), y0[i], arm[i]])
        beta, res, *_ = np.linalg.lstsq(x, y1[i], rcond=None)
        s = math.sqrt(res[0] / (n - 3) * np.linalg.inv(x.T @ x)[2, 2])
        assert est[i] == pytest.approx(beta[2], rel=1e-10) and se[i] == pytest.approx(s, rel=1e-10)
        assert p[i] == pytest.approx(2 * stats.t.sf(abs(beta[2] / s), n - 3), rel=1e-8)
    # log-rank against scipy.stats.logrank, with ties (times rounded to whole days) and censoring
    time = np.round(rng.exponential(100.0, size=(3, n)) * np.where(arm == 1, 1.5, 1.0))
    cens = rng.uniform(0, 250, size=(3, n))
    event = (time <= cens).astype(float)
    time = np.minimum(time, np.round(cens))
    est, se, p = logrank(time, event, arm)
    for i in range(3):
        x = stats.CensoredData(uncensored=time[i][(arm[i] == 1) & (event[i] == 1)], right=time[i][(arm[i] == 1) & (event[i] == 0)])
        y = stats.CensoredData(uncensored=time[i][(arm[i] == 0) & (event[i] == 1)], right=time[i][(arm[i] == 0) & (event[i] == 0)])
        assert p[i] == pytest.approx(stats.logrank(x, y).pvalue, rel=1e-8)

        def neg_pl(b, i=i):  # Breslow partial likelihood, written out event by event
            out = 0.0
            for j in np.flatnonzero(event[i] == 1):
                risk = time[i] >= time[i, j]
                out -= b * arm[i, j] - math.log(np.sum(np.exp(b * arm[i][risk])))
            return out

        ref = optimize.minimize_scalar(neg_pl, bounds=(-5, 5), method="bounded", options={"xatol": 1e-10})
        assert est[i] == pytest.approx(ref.x, abs=1e-6)


def test_resume_recomputes_nothing_and_a_changed_run_is_refused(model, tmp_path):
    from il2pkpd.io.sweep_store import SweepFolder

    store = SweepFolder(tmp_path / "power")
    first = trial_power(model, DESIGN, ["ttest(y, 60)"], [40], n_trials=60, chunk_trials=20, store=store)
    files = sorted((tmp_path / "power").glob("cells/*/*.parquet"))
    assert len(files) == 3
    files[1].unlink()  # an interrupted run: one block missing
    calls = []
    again = trial_power(model, DESIGN, ["ttest(y, 60)"], [40], n_trials=60, chunk_trials=20, store=store, progress=lambda d, t: calls.append(d))
    assert again.table["value"].iloc[0] == first.table["value"].iloc[0]
    assert calls == [2, 3] and len(sorted((tmp_path / "power").glob("cells/*/*.parquet"))) == 3  # two blocks found, one run
    with pytest.raises(OptionError, match="different"):
        trial_power(model, DESIGN, ["ttest(y, 60)"], [40], n_trials=60, chunk_trials=20, store=store, alpha=0.1)
    # blocks of another size would overlap the stored ones (trials counted twice): refused too
    with pytest.raises(OptionError, match="different.*chunk_trials"):
        trial_power(model, DESIGN, ["ttest(y, 60)"], [40], n_trials=60, chunk_trials=30, store=store)
    # how subjects are batched does not change a number: the folder resumes (nothing to run)
    from il2pkpd.solver_options import DEFAULT_SOLVER_OPTIONS

    calls.clear()
    vmap = dataclasses.replace(DEFAULT_SOLVER_OPTIONS["sweep"], batching="vmap")
    trial_power(model, DESIGN, ["ttest(y, 60)"], [40], n_trials=60, chunk_trials=20, store=store, options=vmap, progress=lambda d, t: calls.append(d))
    assert calls == [3]  # all three blocks found, none run


@pytest.mark.parametrize("kw, match", [
    ({"analyses": ["ttest(y, 30)"]}, "does not sample y on day"),
    ({"analyses": ["logrank(death)"]}, "logrank takes an event"),
    ({"analyses": ["anova(y, 60)"]}, "must be one of"),
    ({"analyses": ["ttest(z, 60)"]}, "not an observation"),
    ({"sample_sizes": [3]}, "integers >= 4"),
    ({"alpha": 1.5}, "alpha"),
    ({"n_trials": 1}, "n_trials"),
    ({"params": {"nope": 1.0}}, "not parameters"),
])
def test_bad_input_is_refused_naming_it(model, kw, match):
    args = {"analyses": ["ttest(y, 60)"], "sample_sizes": [20], "n_trials": 10} | kw
    with pytest.raises(OptionError, match=match):
        trial_power(model, DESIGN, **args)


def test_arm_sizes_follow_the_allocation():
    d = TrialDesign("3:1", (Arm("a", "1 mg po once", 3), Arm("b", None, 1)), (Sample("y", (0.0,)),))
    assert arm_sizes(d, 40) == [30, 10] and arm_sizes(d, 41) == [31, 10]
    with pytest.raises(OptionError, match="each needs >= 2"):
        arm_sizes(d, 5)


def test_cli_power_writes_a_resumable_folder_and_refuses_bad_input(tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from il2pkpd.cli import app

    out = tmp_path / "pw"
    args = ["power", "--model", str(MODEL), "--arm", "drug=1 mg po once", "--arm", "placebo=none", "--sample", "y=0,60", "--analysis", "ttest(y, 60)",
            "--n", "20,40", "--trials", "50", "--target", "0.3", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = pd.read_csv(out / "summary.csv")
    direct = trial_power(il2pkpd.load_model(MODEL), DESIGN, ["ttest(y, 60)"], [20, 40], n_trials=50)
    np.testing.assert_allclose(summary["value"], direct.table["value"])  # the CLI is the library, number for number
    how = _crossing_method(summary["n_total"].to_numpy(), summary["value"].to_numpy(), 0.3)  # checked on its own above
    assert json.loads((out / "sample_size.json").read_text())[0]["how"] == how
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and pd.read_csv(out / "summary.csv").equals(summary)
    def swap(flag, value):
        argv = list(args)
        argv[argv.index(flag) + 1] = value
        return argv[:-1] + [str(tmp_path / "bad")]

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for argv, word in ((swap("--n", "20,x"), "--n"), (swap("--analysis", "ttest(y, 30)"), "does not sample"),
                       (args[:-1] + [str(tmp_path / "bad"), "--design", "ivory"], "not both"),
                       (args[:-1] + [str(a_file)], "is a file"), (args[:-1] + [str(a_file / "sub")], "is a file, not a folder")):
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 2 and word in res.output, res.output


def test_cox_estimate_without_events_in_an_arm_is_at_its_limit():
    time = np.array([[5.0, 6.0, 7.0, 8.0], [5.0, 6.0, 7.0, 8.0], [5.0, 6.0, 7.0, 8.0]])
    arm = np.array([[0, 0, 1, 1]] * 3)
    event = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=float)  # none treated; none control; none at all
    est, se, p = logrank(time, event, arm)
    assert est[0] == -np.inf and est[1] == np.inf and np.isnan(est[2]) and np.isnan(p[2])
    assert np.isfinite(p[0])  # (trial 1's only event has only treated subjects at risk: the test's variance is 0, p undefined)
    assert np.isnan(p[1])


def test_dask_workers_give_the_same_trials(model):
    """Blocks on a Dask LocalCluster (one worker process) give the in-process numbers: a trial's
    random numbers depend on (seed, trial) only."""
    args = dict(analyses=["ttest(y, 60)", "logrank(mace)"], sample_sizes=[20], n_trials=30, chunk_trials=10, grid_step=30.0)
    here = trial_power(model, DESIGN, **args)
    there = trial_power(model, DESIGN, workers=1, **args)
    cols = ["trial", "analysis", "estimate", "p"]
    a = here.trials[cols].sort_values(["analysis", "trial"]).reset_index(drop=True)
    b = there.trials[cols].sort_values(["analysis", "trial"]).reset_index(drop=True)
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(a, b)


def test_accrual_censors_at_the_study_end_as_the_closed_form_says(model):
    """Entry uniform on [0, A], the study stops F days after the first entry, constant hazard
    lam: a control subject's event is seen with probability 1 - e^{-lam F} (e^{lam A} - 1)/(lam A).
    Both simulate_trial and trial_power's simulator, within 3 binomial SEs."""
    from il2pkpd.design import simulate_trial
    from il2pkpd.design.analyses import parse_analysis
    from il2pkpd.design.power import _TrialSimulator

    a_days, f_days, lam = 400.0, 730.0, 0.002
    expected = 1 - math.exp(-lam * f_days) * (math.exp(lam * a_days) - 1) / (lam * a_days)
    design = TrialDesign("accrual", (Arm("placebo", None, 1500),), (), followup=f_days, events=("mace",), accrual=a_days)
    table = simulate_trial(design, model, seed=4)
    events = table[table["EVENT"] == "mace"]
    se = math.sqrt(expected * (1 - expected) / len(events))
    assert abs(events["DV"].mean() - expected) < 3 * se
    assert events["TIME"].max() <= f_days and (events.loc[events["DV"] == 0, "TIME"] >= f_days - a_days - 1e-9).all()
    two = TrialDesign("accrual", (Arm("drug", "1 mg po once", 1), Arm("placebo", None, 1)), (), followup=f_days, events=("mace",), accrual=a_days)
    theta = np.array([[p.value for p in model.parameters]])
    sim = _TrialSimulator(model, two, [parse_analysis("logrank(mace)", model)], [1, 300], theta, np.zeros(len(model.parameters)), 7, 10.0,
                          il2pkpd.SolverOptions(solver="rodas4", rtol=1e-6, atol=1e-9))
    t, e = sim.simulate(np.arange(5), np.zeros(5, dtype=int))["event"]["mace"]
    seen = e[:, 1:].mean()
    assert abs(seen - expected) < 3 * math.sqrt(expected * (1 - expected) / e[:, 1:].size)
    with pytest.raises(Exception, match="shorter than `followup`"):
        TrialDesign("bad", two.arms, (), followup=100.0, events=("mace",), accrual=200.0)


def _repeated_measures(rng, trials, n, drop_rate=0.0):
    """Baseline, 3 post-baseline visits with AR(1)-like correlation, arm effects growing over
    visits; monotone dropout completely at random (visit v missed once dropped before it)."""
    arm = np.tile(np.repeat([0.0, 1.0], n // 2), (trials, 1))
    y0 = rng.normal(2.0, 0.3, (trials, n))
    corr = 0.6 ** np.abs(np.subtract.outer(np.arange(3), np.arange(3)))
    e = rng.multivariate_normal(np.zeros(3), 0.04 * corr, (trials, n))
    y = 0.5 + 0.7 * y0[..., None] + arm[..., None] * np.array([-0.05, -0.1, -0.15]) + e
    drop = rng.exponential(1.0 / drop_rate, (trials, n)) if drop_rate else np.full((trials, n), np.inf)
    y = np.where(np.arange(1, 4) < drop[..., None], y, np.nan)
    return y0, y, arm


def test_mmrm_with_complete_data_is_the_ancova_at_the_endpoint():
    """Same regressors at every visit: GLS with any covariance equals OLS per visit, so
    MMRM-lite's estimate, SE and p equal the ANCOVA's (itself checked against lstsq above)."""
    y0, y, arm = _repeated_measures(np.random.default_rng(11), 4, 40)
    for v in range(3):
        got, want = mmrm(y0, y, arm, v), ancova(y0, y[..., v], arm)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-9)


def test_mmrm_with_dropout_is_close_to_the_maximum_likelihood_mmrm():
    """With dropout (MCAR), against the MMRM's own definition: the maximum-likelihood fit of
    y_v ~ visit + visit:y0 + visit:arm with an unstructured covariance, by scipy.optimize on
    the observed blocks. MMRM-lite (one GLS step) agrees to a small share of its SE; the
    complete-case ANCOVA uses fewer subjects and has the larger SE."""
    y0, y, arm = _repeated_measures(np.random.default_rng(12), 1, 3000, drop_rate=0.35)
    seen = np.isfinite(y[0])
    assert 0.2 < 1 - seen[:, 2].mean() < 0.8  # a real share missed at the endpoint
    z = np.column_stack([np.ones(3000), y0[0], arm[0]])

    def nll(theta):
        beta = theta[:9].reshape(3, 3)
        chol = np.zeros((3, 3))
        chol[np.tril_indices(3)] = theta[9:]
        chol[np.diag_indices(3)] = np.exp(np.diag(chol))
        cov = chol @ chol.T
        r = y[0] - z @ beta.T
        out = 0.0
        for k in (1, 2, 3):  # monotone patterns: the first k visits seen
            rows = seen[:, :k].all(axis=1) & (~seen[:, k] if k < 3 else True)
            rk = r[rows][:, :k]
            c = cov[:k, :k]
            out += 0.5 * (rows.sum() * np.linalg.slogdet(c)[1] + np.einsum("ni,ij,nj->", rk, np.linalg.inv(c), rk))
        return out

    start = np.concatenate([np.zeros(9), [math.log(0.2), 0, math.log(0.2), 0, 0, math.log(0.2)]])
    ml = optimize.minimize(nll, start, method="BFGS", options={"gtol": 1e-8, "maxiter": 2000})
    est, se, p = (float(a[0]) for a in mmrm(y0, y, arm, 2))
    assert abs(est - ml.x[8]) < 0.1 * se
    cc_est, cc_se, _ = ancova(y0, y[..., 2], arm)
    assert se < float(cc_se[0])
    assert est == pytest.approx(-0.15, abs=4 * se)


def test_trial_power_with_dropout_misses_later_visits_and_mmrm_uses_earlier_ones(model):
    design = TrialDesign("two-arm, visits", DESIGN.arms, (Sample("y", (0.0, 20.0, 40.0, 60.0)),), dropout_per_year=4.0)
    r = trial_power(model, design, ["ancova(y, 60)", "mmrm(y, 60)"], [100], n_trials=200)
    t = r.trials.pivot_table(index="trial", columns="analysis", values="se")
    assert (t["mmrm(y, 60)"] < t["ancova(y, 60)"]).mean() > 0.9  # more subjects (and visits) inform the endpoint
    no_drop = trial_power(model, dataclasses_replace(design, dropout_per_year=0.0), ["ancova(y, 60)", "mmrm(y, 60)"], [100], n_trials=50).trials
    wide = no_drop.pivot_table(index="trial", columns="analysis", values="p")
    np.testing.assert_allclose(wide["mmrm(y, 60)"], wide["ancova(y, 60)"], rtol=1e-8)  # complete data: the same test
