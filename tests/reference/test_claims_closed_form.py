"""The claims checker (il2pkpd.io.claims) against closed forms of the 1-compartment oral
model (pk1_oral: ka 1/h, CL 1 L/h, V 20 L, F 1): the Bateman function's area, its terminal
half-life ln 2 V/CL, dose-proportional peaks, and a parameter override per arm."""

from __future__ import annotations

import math

import numpy as np
import pytest

import il2pkpd
from il2pkpd.io.claims import check_claims, load_claims

KA, CL, V = 1.0, 1.0, 20.0
K = CL / V


def auc_bateman(dose, t_end, cl=CL):
    k = cl / V
    return dose * KA / (V * (KA - k)) * ((1 - math.exp(-k * t_end)) / k - (1 - math.exp(-KA * t_end)) / KA)


def claim(cid, arms, check, expect, horizon=400.0, dense_step=0.02):
    lo, hi = (repr(float(x)) if math.isfinite(x) else ("inf" if x > 0 else "-inf") for x in expect)
    return (f'[[claims]]\nid = "{cid}"\nabout = "parameters.cl"\nsays = "a closed form"\narms = {arms}\ncheck = "{check}"\n'
            f"expect = [{lo}, {hi}]\nhorizon = {horizon}\ndense_step = {dense_step}\ntypical = \"holds\"\n\n")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    model = il2pkpd.load_model("pk1_oral")
    auc = auc_bateman(100.0, 400.0)
    half = math.log(2) / K
    text = "".join([
        claim("auc-inside", '{ d = "100 mg po once" }', "d.auc(cp, 0, 400)", (auc * 0.999, auc * 1.001)),
        claim("auc-outside", '{ d = "100 mg po once" }', "d.auc(cp, 0, 400)", (auc * 1.01, math.inf)),
        claim("half-life", '{ d = "100 mg po once" }', "48*log(2)/log(d.at(cp, 48)/d.at(cp, 96))", (half * (1 - 1e-6), half * (1 + 1e-6))),
        claim("dose-proportional", '{ lo = "100 mg po once", hi = "200 mg po once" }', "hi.cmax(cp)/lo.cmax(cp)", (2 - 1e-6, 2 + 1e-6)),
        claim("override", '{ a = "100 mg po once", b = { regimen = "100 mg po once", params = { cl = 2.0 } } }',
              "b.auc(cp, 0, 400)/a.auc(cp, 0, 400)", (-math.inf, math.inf)),
    ])
    path = tmp_path_factory.mktemp("claims") / "pk1_oral.toml"
    path.write_text(text)
    return check_claims(model, load_claims(path, model), rtol=1e-10, atol=1e-12)


def test_area_and_verdicts_against_the_bateman_integral(results):
    want = auc_bateman(100.0, 400.0)
    # trapezoid on a 0.02 h grid: relative error ~ (ka h)^2 / 12 near the peak, well under 1e-3
    assert results.loc["auc-inside", "typical_value"] == pytest.approx(want, rel=1e-4)
    assert results.loc["auc-inside", "typical_verdict"] == "holds"
    assert results.loc["auc-outside", "typical_verdict"] == "contradicted"


def test_terminal_half_life_is_ln2_v_over_cl(results):
    # at 48-96 h the absorption term is exp(-48) of the elimination term: the slope is exact
    assert results.loc["half-life", "typical_value"] == pytest.approx(math.log(2) / K, rel=1e-7)
    assert results.loc["half-life", "typical_verdict"] == "holds"


def test_arms_are_simulated_each_with_its_regimen_and_parameters(results):
    assert results.loc["dose-proportional", "typical_value"] == pytest.approx(2.0, rel=1e-7)
    want = auc_bateman(100.0, 400.0, cl=2.0) / auc_bateman(100.0, 400.0)
    assert results.loc["override", "typical_value"] == pytest.approx(want, rel=1e-4)


def test_verdict_over_draws_is_the_share_inside_the_range():
    """holds from half the draws inside, contradicted below one in ten, uncertain between."""
    from il2pkpd.io.claims import Arm, Claim

    c = Claim("x", "p", "s", "", (Arm("d", None),), "d.at(cp, 1)", "1", (0.0, 1.0), 2.0, 1.0, "holds", None, "", (("d.at(cp, 1)", "d", "at(cp, 1)"),))
    inside, outside = np.full(50, 0.5), np.full(50, 2.0)
    assert c.verdict(np.concatenate([inside, outside])) == "holds"
    assert c.verdict(np.concatenate([inside[:9], np.full(91, 2.0)])) == "contradicted"
    assert c.verdict(np.concatenate([inside[:10], np.full(90, 2.0)])) == "uncertain"
    assert c.verdict(np.array([1.0])) == "holds" and c.verdict(np.array([1.5])) == "contradicted"
    # not a number (a failed solve, an undefined check) is never a verdict on the claim itself
    assert c.verdict(np.array([np.nan])) == "undefined"
    assert c.verdict(np.concatenate([inside[:49], np.full(51, np.nan)])) == "uncertain"  # undefined draws are not inside
