"""The FOCE-I objective of the warfarin PK/PD model equals NONMEM's at NONMEM's estimates.

Reference: shared/conformance/warfarin/reference.json, "A_fixed_parameter_checks": NONMEM
7.4.3 FOCE-I (METHOD=1 INTER, ADVAN13 TOL=6) final estimates of the emax3 model (8 etas) and
the emax4 variant (no IIV on ktr, ka, emax: 5 etas); OFV without the constant 1326.9102 and
1418.9229, tolerance 0.01. The conditional modes are checked through NONMEM's IPRED table
(emax*_pred.txt, 5 significant digits): the individual predictions at our modes must agree
to 5e-4 relative (NONMEM's own modes and ODE solve carry its TOL=6).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import il2pkpd
from il2pkpd.io.nonmem import read_nonmem_csv
from il2pkpd.likelihood import MarginalLikelihood


@pytest.mark.parametrize("case", ["emax3", "emax4"])
def test_focei_ofv_and_individual_predictions_match_nonmem(conformance, case):
    ref = json.loads((conformance / "warfarin" / "reference.json").read_text())["A_fixed_parameter_checks (strong)"][case]
    est = ref["nonmem_final_estimates"]
    th, om = est["theta"], est["omega_diag"]
    e = math.exp
    typical = {"ktr": e(th["tktr"]), "ka": e(th["tka"]), "cl": e(th["tcl"]), "v": e(th["tv"]), "emax": 1 / (1 + e(-th["temax"])),
               "ec50": e(th["tec50"]), "kout": e(th["tkout"]), "e0": e(th["te0"])}
    model = il2pkpd.load_model("warfarin")
    model = model.replace(parameters=tuple(p if p.name in om else replace(p, iiv=None) for p in model.parameters))
    ml = MarginalLikelihood(model, read_nonmem_csv(conformance / "warfarin" / "data.csv"), method="focei")
    assert ml.iiv_names == [n for n in typical if n in om]
    theta = np.array([typical[p.name] for p in model.parameters])
    modes = ml.modes(theta, np.diag([om[n] for n in ml.iiv_names]),
                     {"cp": {"add": th["pkadd.err"], "prop": th["prop.err"]}, "pca": {"add": th["pdadd.err"]}})
    assert modes.converged.all() and (modes.status == 0).all()
    assert modes.ofv == pytest.approx(ref["OFV_FOCEI_without_constant"], abs=0.01)

    pred, _ = ml.joint._predict(ml.individual(jnp.asarray(theta), jnp.asarray(modes.eta)), jnp.asarray(ml.joint.covariates()))
    obs = ml.joint.observations()
    ours = np.asarray(pred)[obs["subject"], obs["slot"]]
    table = pd.read_csv(conformance / "warfarin" / f"{case}_pred.txt", sep=r"\s+", skiprows=1)
    rows = ml.joint._row[obs["subject"], obs["slot"]]  # 0-based data rows; RXROW is 1-based
    nonmem = table.set_index(table.RXROW.astype(int) - 1).IPRED.reindex(rows).to_numpy()
    assert len(ours) == 483 and np.isfinite(nonmem).all()
    rel = np.abs(ours - nonmem) / np.maximum(np.abs(nonmem), 1e-3)
    assert rel.max() <= 5e-4, f"IPRED differs from NONMEM's by {rel.max():.2e} at row {rows[np.argmax(rel)] + 1}"
