"""The default model keeps its own promises (issue 16): every behaviour models/ivory.toml's
descriptions and sources state is a claim in models/claims/ivory.toml, simulated at the
model file's values and at the shipped posterior; the verdicts the claims file records
(holds / uncertain / contradicted, with a note where a claim fails) are what the model gives.
A model or posterior change that flips a verdict fails here until the claim, its note or the
model is mended."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from scipy import stats

import il2pkpd
from il2pkpd.errors import ModelSpecError, OptionError
from il2pkpd.inference.priors import beta_shape
from il2pkpd.io.claims import check_claims, claims_path, load_claims


@pytest.fixture(scope="module")
def model():
    return il2pkpd.load_model("ivory")


@pytest.fixture(scope="module")
def claims(model):
    return load_claims(claims_path(model), model)


@pytest.fixture(scope="module")
def results(model, claims):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stored fit's approximation warning
        return check_claims(model, claims, fit="ivory-published", draws=100)


def test_every_failing_claim_says_what_was_done(claims):
    for c in claims:
        if "contradicted" in (c.typical, c.posterior) or c.posterior == "uncertain":
            assert len(c.note) > 40, f"claim {c.id} fails without a note saying what was done"


def test_verdicts_at_the_model_files_values_are_the_recorded_ones(results):
    bad = results[results["typical_verdict"] != results["recorded_typical"]]
    assert bad.empty, bad[["typical_value", "expect_low", "expect_high", "typical_verdict", "recorded_typical"]].to_string()


def test_verdicts_at_the_shipped_posterior_are_the_recorded_ones(results):
    assert (results["posterior_draws"] == 100).all()
    undefined = results["posterior_undefined"]
    # an undefined draw counts as not inside; only the Treg return half-life may have some
    # (its log needs Tregs above baseline at days 40 and 60) and none may fail to solve
    assert (undefined[undefined.index != "kout-t-return-half-life"] == 0).all(), undefined[undefined > 0]
    bad = results[results["posterior_verdict"] != results["recorded_posterior"]]
    cols = ["posterior_q5", "posterior_median", "posterior_q95", "posterior_share_inside", "posterior_verdict", "recorded_posterior"]
    assert bad.empty, bad[cols].to_string()


def test_every_parameter_description_with_a_number_has_a_claim_or_says_why_not(model, claims):
    """The parameters whose descriptions state a behaviour (checked by hand in
    docs/research/model_claims_catalogue.md) are each the subject of some claim."""
    about = " ".join(c.about for c in claims)
    stated = ["f_sc", "ka", "cl", "vc", "vp", "q", "kprol", "mtt", "kout_t", "e_cd", "ec50_nk", "emax_nk", "tbr0", "kout_x", "a_acs",
              "k_res", "imax", "delta", "p_mi_1y", "k_weib", "k_m", "beta_tbr"]
    missing = [p for p in stated if f"parameters.{p}" not in about]
    assert not missing, missing


def test_typical_values_are_the_prior_centres_the_header_states(model):
    """Header of ivory.toml: values are the prior medians (lognormal, normal), the means of
    beta and truncated-normal priors, except p_mi_1y, whose 0.07 lies above its prior's median
    0.057 (scipy.stats.beta)."""
    for p in model.parameters:
        if p.prior is None or p.fixed:
            continue
        d = p.prior
        centre = {"lognormal": lambda: d["median"], "normal": lambda: d["mean"], "truncnormal": lambda: d["mean"], "beta": lambda: d["mean"],
                  "uniform": lambda: 0.5 * (d["lower"] + d["upper"])}[d["dist"]]()
        if p.name == "p_mi_1y":
            median = stats.beta(*beta_shape(d["mean"], d["sd"])).median()
            assert round(median, 3) == 0.057 and p.value > median
            continue
        assert p.value == pytest.approx(centre, rel=1e-3), p.name


def test_a_broken_claim_is_refused_naming_it(model, tmp_path):
    good = claims_path(model).read_text()
    cases = [
        (good.replace('check = "sc.cmax(conc)"', 'check = "xx.cmax(conc)"', 1), "sc-cmax.*arm"),
        (good.replace('check = "sc.cmax(conc)"', 'check = "sc.cmax(concentration)"', 1), "sc-cmax.*concentration"),
        (good.replace('check = "sc.cmax(conc)"', 'check = "sc.at(conc, 5)"', 1), "sc-cmax.*beyond the claim's horizon"),
        (good.replace('check = "sc.cmax(conc)"', 'check = "__import__(1)"', 1), "sc-cmax"),
        (good.replace('check = "sc.cmax(conc)"', 'check = "min(sc.cmax(conc), 1, 2)"', 1), "sc-cmax.*takes 2 argument"),
        (good.replace('typical = "holds"', 'typical = "fine"', 1), "sc-cmax.*typical"),
        (good.replace('expect = [10.0, 50.0]', 'expect = [50.0, 10.0]', 1), "sc-cmax.*low < high"),
        (good.replace('arms = { sc = "1.5 MIU sc once" }', 'arms = { sc = { regimen = "1.5 MIU sc once", params = { kz = 1 } } }', 1), "sc-cmax.*kz"),
    ]
    for i, (text, match) in enumerate(cases):
        assert text != good, match
        path = tmp_path / f"c{i}.toml"
        path.write_text(text)
        with pytest.raises(ModelSpecError, match=match):
            load_claims(path, model)


def test_a_model_changed_after_loading_is_refused(model, claims):
    """The sweeps simulate the model file; a Model changed in Python would be checked against
    claims it does not obey, silently: refused instead."""
    with pytest.raises(OptionError, match="differs from it"):
        check_claims(model.with_values(kprol=2.0), claims)


def test_cli_checks_the_claims_and_refuses_a_model_without_any(tmp_path):
    exe = [sys.executable, "-m", "il2pkpd", "claims"]
    ok = subprocess.run(exe + ["ivory", "--check", "--out", str(tmp_path / "claims.csv")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "0 differ" in ok.stdout and (tmp_path / "claims.csv").is_file()
    bad = subprocess.run(exe + ["pk1_oral"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no claims file" in bad.stderr and "Traceback" not in bad.stderr
