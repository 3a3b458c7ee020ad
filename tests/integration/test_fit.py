"""fit() by NUTS (nutpie, JAX gradients), fits on disk, posterior draws into simulate().

SYNTHETIC data with known truth (see test_fit_map.py). Small settings keep CI short; the
convergence warnings that such short chains deserve are asserted, not silenced.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import il2pkpd

pytest.importorskip("pymc")
from test_fit_map import SPEC, TRUTH  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _assert_posterior_covers_the_truth(summary):
    assert list(summary.index) == ["ka", "cl", "v", "omega_ka", "omega_cl", "omega_v", "sigma_cp"]
    # the truth within 3 posterior SDs of the mean (a ~99.7% statement, so a fixed-seed pass
    # is not a lucky 89% interval); the posterior SD itself is checked to be informative
    for name, value in {**TRUTH, "omega_ka": 0.3, "omega_cl": 0.3, "omega_v": 0.3, "sigma_cp": 0.1}.items():
        mean, sd = summary.loc[name, "mean"], summary.loc[name, "sd"]
        assert abs(mean - value) <= 3 * sd, f"{name}: truth {value}, posterior {mean} +- {sd}"
        assert sd < 0.5 * abs(value), f"{name}: posterior SD {sd} is not informative"


def test_nuts_posterior_covers_the_truth(nuts_fit):
    _assert_posterior_covers_the_truth(nuts_fit.summary)
    assert nuts_fit.info["sampler"] == "nutpie" and nuts_fit.info["n_subjects"] == 16


@pytest.mark.parametrize("sampler", ["numpyro", "blackjax"])
def test_jax_samplers_through_pymc_cover_the_truth(model, subjects, sampler, fit_options):
    pytest.importorskip(sampler)
    from il2pkpd.inference import fit

    # one short chain on half the subjects keeps the suite short; these samplers adapt more
    # slowly than nutpie (~290 vs ~80 leapfrog steps per draw after 50 warm-up steps here)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", il2pkpd.Il2pkpdWarning)  # short chain: ESS < 400 is expected
        result = fit(model, subjects[:8], draws=100, tune=100, chains=1, seed=1, sampler=sampler, predictive_draws=0, options=fit_options)
    s = result.summary
    for name, value in {**TRUTH, "sigma_cp": 0.1}.items():
        assert abs(s.loc[name, "mean"] - value) <= 3 * s.loc[name, "sd"], f"{name}: truth {value}, posterior {s.loc[name, 'mean']} +- {s.loc[name, 'sd']}"
    post = result.idata["posterior"]
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 100
    assert result.info["sampler"] == sampler and result.info["divergences"] <= 1  # < 1% of 100 draws


def test_missing_sampler_package_is_named(model, subjects, monkeypatch):
    import importlib.util

    from il2pkpd.inference import fit

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numpyro" else real(name, *a))
    with pytest.raises(il2pkpd.OptionError, match=r"needs the 'numpyro' package.*pip install"):
        fit(model, subjects, sampler="numpyro")


def test_blackjax_versions_that_pymc_cannot_drive_are_refused(model, subjects, monkeypatch):
    import importlib.metadata

    from il2pkpd.inference import fit

    pytest.importorskip("blackjax")
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.7.1" if name == "blackjax" else real(name))
    with pytest.raises(il2pkpd.OptionError, match=r"BlackJAX 1.7.1 .*pymc-devs/pymc#8367.*blackjax<1.6"):
        fit(model, subjects, sampler="blackjax")


def test_fit_round_trips_on_disk_and_detects_a_changed_model(nuts_fit, model, tmp_path):
    from il2pkpd.io.fits import load_fit, write_fit

    folder = write_fit(nuts_fit, tmp_path / "pk-fit")
    assert {p.name for p in folder.iterdir()} == {"posterior.nc", "summary.csv", "fit.json"}
    info = json.loads((folder / "fit.json").read_text())
    assert info["model_hash"] == nuts_fit.info["model_hash"] and "data_hash" in info and info["seed"] == 1
    back = load_fit(folder, model=model)
    np.testing.assert_allclose(back.population_draws()["cl"], nuts_fit.population_draws()["cl"])
    with pytest.warns(il2pkpd.Il2pkpdWarning, match="has changed since fit"):
        load_fit(folder, model=model.with_values(ka=2.0))


def test_simulate_takes_posterior_draws(nuts_fit, model):
    draws = nuts_fit.population_draws()
    typical = il2pkpd.simulate(model, "100 mg po once", np.array([1.0, 4.0]), params=nuts_fit, n_subjects=2, iiv=False)
    assert typical["cp"].dims == ("draw", "subject", "time") and typical.sizes["draw"] == 300
    np.testing.assert_array_equal(typical["cl"].values[:, 0], draws["cl"])  # draw d uses posterior draw d
    # with IIV, each draw's subjects spread by that draw's omega
    first = {k: v[:30] for k, v in draws.items()}  # 30 draws x 200 subjects keeps the test short
    ds = il2pkpd.simulate(model, "100 mg po once", np.array([1.0]), params=first, n_subjects=200, seed=0)
    spread = np.std(np.log(ds["cl"].values / first["cl"][:, None]), axis=1)
    assert np.corrcoef(spread, first["omega_cl"])[0, 1] > 0.9


def test_bad_sampler_is_refused(model, subjects):
    from il2pkpd.inference import fit

    with pytest.raises(il2pkpd.OptionError, match="'hmc'"):
        fit(model, subjects, sampler="hmc")


def test_cli_fit_writes_the_fit_folder(tmp_path):
    out = tmp_path / "example-fit"
    res = subprocess.run([sys.executable, "-m", "il2pkpd", "fit", "--model", "pk1_oral", "--data", str(EXAMPLES / "nonmem" / "pk1_oral_synthetic.csv"),
                          "--out", str(out), "--sampler", "map", "--solver", "rodas4", "--rtol", "1e-5"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert (out / "fit.json").is_file() and (out / "summary.csv").is_file()
    assert "cl" in res.stdout
    assert json.loads((out / "fit.json").read_text())["solver"] == {"solver": "rodas4", "rtol": 1e-5, "atol": 1e-9}


@pytest.mark.parametrize(("flag", "value", "message"), [("--rtol", "2", "`rtol` must be in (0, 1), got 2.0"),
                                                        ("--solver", "euler", "`solver` must be one of")])
def test_cli_fit_refuses_bad_solver_settings(tmp_path, flag, value, message):
    res = subprocess.run([sys.executable, "-m", "il2pkpd", "fit", "--model", "pk1_oral", "--data", str(EXAMPLES / "nonmem" / "pk1_oral_synthetic.csv"),
                          "--out", str(tmp_path / "f"), flag, value], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "f").exists()
