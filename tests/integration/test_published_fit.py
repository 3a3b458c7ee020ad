"""The stored default posterior fits/ivory-published: loads, drives simulate(), and its
posterior predictive checks bracket the published targets the issue names.

Reported values come from il2pkpd.datasets.published() (BRIEF S1 IVORY, S3 IVORY-FINALE,
LILACS and DILfrequency sources there). A small number of draws keeps CI short; the full table
(100 draws) is in fits/README.md.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import il2pkpd
from il2pkpd.io.fits import load_fit

FIT = Path(__file__).resolve().parents[2] / "fits" / "ivory-published" / "fit.json"
# The fit is made by scripts/calibrate_published.py (~30-45 min); until it is stored these
# checks cannot run, and the README says so.
pytestmark = pytest.mark.skipif(not FIT.is_file(), reason="fits/ivory-published is not stored yet (scripts/calibrate_published.py)")


@pytest.fixture(scope="module")
def fit(ivory):
    with warnings.catch_warnings():
        warnings.simplefilter("error", il2pkpd.Il2pkpdWarning)  # the stored fit must match the current model file
        return load_fit("ivory-published", model=ivory)


def test_fit_is_complete_and_honest_about_its_method(fit):
    assert fit.info["model"] == "ivory" and "Laplace" in fit.info["method"]
    assert fit.info["approximation"] in ("importance", "laplace", "smc")
    if fit.info["approximation"] == "smc":  # stored only when every stage's moves passed the sampler's check
        assert fit.info["smc"]["moves_mixed"] and fit.info["smc"]["stages"][-1]["beta"] == 1.0
    if fit.info["approximation"] == "importance":  # the correction is used only when its diagnostic allows
        assert fit.info["pareto_khat"] < 0.7
        if "importance_rounds" in fit.info:  # adaptive rounds; with them the draws' log prior and likelihood
            assert fit.info["importance_rounds"][-1]["pareto_khat"] < 0.7
            assert {"log_prior", "log_likelihood"} <= set(fit.idata.children)
    assert {"posterior", "prior", "sample_stats"} <= set(fit.idata.children)
    s = fit.summary
    assert {"prior_mean", "prior_sd", "mean", "sd", "q5", "q95", "informed"} <= set(s.columns)
    assert s["informed"].any() and not s["informed"].all()  # some parameters are informed, others stay at their priors


def test_simulate_takes_the_published_posterior(fit, ivory):
    ds = il2pkpd.simulate(ivory, "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7", np.array([5.0, 61.0]), params=fit, iiv=False, solver="rodas4")
    n = len(fit.population_draws()["ec50"])
    assert ds.sizes["draw"] == n and np.isfinite(ds["tbr"].values).all()
    assert ds["treg_fold"].values[:, 0, 0].std() > 0  # posterior uncertainty reaches the prediction


def test_posterior_predictive_checks_bracket_the_issue_targets(fit, ivory):
    from il2pkpd.inference.calibration import published_checks

    checks = published_checks(fit, ivory, draws=12).set_index("target")
    for target in ("ivory_tbr_diff_index", "lilacs_ed75", "dilfreq_treg_ss", "finale_mi_2y_placebo_count", "finale_mi_2y_il2_count"):
        assert checks.loc[target, "inside"], checks.loc[target].to_dict()
