"""The public entry points read files; the computing layers below them refuse names and paths
with a message that names the fix (ARCHITECTURE.md: only ``io`` touches files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import il2pkpd
from il2pkpd import DataFormatError, ModelSpecError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_simulate_by_name_equals_simulate_of_the_loaded_model():
    from il2pkpd.simulation import simulate

    t = np.array([1.0, 4.0, 12.0])
    by_name = il2pkpd.simulate("pk1_oral", "100 mg po once", t)
    loaded = simulate(il2pkpd.load_model("pk1_oral"), "100 mg po once", t)
    np.testing.assert_array_equal(by_name["cp"].values, loaded["cp"].values)


def test_computing_layers_refuse_a_model_name_and_say_how_to_load_it():
    from il2pkpd.design import designs, simulate_trial
    from il2pkpd.simulation import simulate

    with pytest.raises(ModelSpecError, match=r"`model` must be a Model, got 'pk1_oral' \(str\)\. .*il2pkpd\.load_model\('pk1_oral'\)"):
        simulate("pk1_oral", "100 mg po once", [1.0])
    with pytest.raises(ModelSpecError, match=r"il2pkpd\.load_model\('ivory'\)"):
        simulate_trial(designs.ivory(), "ivory")


def test_fit_reads_a_csv_path_and_loads_a_model_by_name(monkeypatch):
    import il2pkpd.io.fits as fits
    from il2pkpd.io.nonmem import NonmemData

    seen = {}
    monkeypatch.setattr(fits, "_fit", lambda model, data, **kw: seen.update(model=model, data=data, kw=kw))
    il2pkpd.fit("pk1_oral", EXAMPLES / "nonmem" / "pk1_oral_synthetic.csv", sampler="map")
    assert seen["model"].name == "pk1_oral" and isinstance(seen["data"], NonmemData) and seen["kw"] == {"sampler": "map"}


def test_inference_fit_refuses_a_path_and_says_how_to_read_it():
    from il2pkpd.inference.fit import fit

    with pytest.raises(DataFormatError, match=r"got the path 'data\.csv'\. Read it first: il2pkpd\.read_nonmem_csv\('data\.csv'\)"):
        fit(il2pkpd.load_model("pk1_oral"), "data.csv", sampler="map")
