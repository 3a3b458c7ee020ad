"""Warfarin PK/PD population predictions match NONMEM's PRED tables at its final estimates.

Reference: shared/conformance/warfarin/{emax3,emax4}_pred.txt (NONMEM 7.4.3 FOCE-I, ETA = 0),
5 significant digits. Model: models/warfarin.toml (transit absorption + PCA turnover).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from il2pkpd.io.nonmem import read_nonmem_csv
from il2pkpd.prediction import predict


def _estimates(conformance, case):
    ref = json.loads((conformance / "warfarin" / "reference.json").read_text())
    th = ref["A_fixed_parameter_checks (strong)"][case]["nonmem_final_estimates"]["theta"]
    e = math.exp
    return {
        "ktr": e(th["tktr"]), "ka": e(th["tka"]), "cl": e(th["tcl"]), "v": e(th["tv"]),
        "emax": 1 / (1 + e(-th["temax"])), "ec50": e(th["tec50"]), "kout": e(th["tkout"]), "e0": e(th["te0"]),
    }


@pytest.mark.parametrize("case", ["emax3", "emax4"])
def test_warfarin_pred_matches_nonmem(conformance, case):
    import il2pkpd

    model = il2pkpd.load_model("warfarin")
    data = read_nonmem_csv(conformance / "warfarin" / "data.csv")
    ours = predict(model, data, _estimates(conformance, case))
    ours.index = ours.ROW.astype(int)  # the reader keeps text columns as read
    table = pd.read_csv(conformance / "warfarin" / f"{case}_pred.txt", sep=r"\s+", skiprows=1)
    table = table.set_index(table.RXROW.astype(int))
    obs = ours.EVID.astype(int) == 0
    assert obs.sum() == 483  # 251 cp + 232 PCA observations (reference.json)
    ref = table.PRED.reindex(ours.index)[obs].to_numpy()
    got = ours.PRED[obs].to_numpy()
    rel = np.abs(got - ref) / np.abs(ref).clip(min=1e-6)
    for dvid in (1, 2):
        sel = ours.DVID[obs].astype(int).to_numpy() == dvid
        assert sel.sum() > 200
        assert rel[sel].max() <= 1e-4, f"{case} DVID {dvid}: max relative difference {rel[sel].max():.2e}"
