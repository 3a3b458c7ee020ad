"""`load_fit` checks the fit's model hash with and without `model=` (issue 12, item 6).

The README's own usage, ``load_fit("ivory-published")``, used to take a fit whose model
had changed without a word: only ``load_fit(path, model=model)`` compared hashes.
"""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

import il2pkpd
from il2pkpd.errors import Il2pkpdWarning
from il2pkpd.io.fits import load_fit
from il2pkpd.model import model_hash


def fit_folder(tmp_path, info: dict):
    folder = tmp_path / "fit"
    folder.mkdir(parents=True)
    (folder / "fit.json").write_text(json.dumps({**info, "estimates": {"ka": 1.0}}))
    pd.DataFrame({"mean": [1.0]}, index=["ka"]).to_csv(folder / "summary.csv")
    return folder


def test_a_changed_model_is_warned_about_without_model_naming_both_hashes(tmp_path):
    folder = fit_folder(tmp_path, {"model": "pk1_oral", "model_hash": "0123456789ab" + "0" * 52})
    now = model_hash(il2pkpd.load_model("pk1_oral"))
    with pytest.warns(Il2pkpdWarning) as rec:
        fit = load_fit(folder)
    msg = str(rec[0].message)
    assert "model 'pk1_oral' has changed since fit 'fit' was made" in msg
    assert "0123456789ab" in msg and now[:12] in msg and "pk1_oral.toml" in msg
    assert fit.info["model_check"].startswith("model changed")


def test_an_unchanged_model_loads_silently_with_or_without_model(tmp_path):
    model = il2pkpd.load_model("pk1_oral")
    folder = fit_folder(tmp_path, {"model": "pk1_oral", "model_hash": model_hash(model)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_fit(folder).info["model_check"] == "same model"
        assert load_fit(folder, model=model).info["model_check"] == "same model"
        assert load_fit(folder, model="pk1_oral").info["model_check"] == "same model"
    with pytest.warns(Il2pkpdWarning, match="has changed"):
        load_fit(folder, model=model.with_values(ka=2.0))


def test_a_fit_without_a_hash_is_warned_about_and_an_unknown_model_is_recorded_as_unchecked(tmp_path):
    with pytest.warns(Il2pkpdWarning, match="records no model hash"):
        load_fit(fit_folder(tmp_path / "a", {"model": "pk1_oral"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = load_fit(fit_folder(tmp_path / "b", {"model": "my_own_model", "model_hash": "f" * 64}))
    assert fit.info["model_check"].startswith("not checked: model 'my_own_model' not found by name")


def test_the_readme_usage_of_the_shipped_fit_is_checked_and_current():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = load_fit("ivory-published")
    assert fit.info["model_check"] == "same model"
