"""Fitting the warfarin PK/PD model to the nlmixr2 warfarin data reaches the population
estimates that NONMEM, nlmixr2 and Monolix agree on.

Reference: shared/conformance/warfarin/reference.json, "consensus_back_transformed" and its
tolerance: typical CL, V, kout, E0 within the consensus range +-5%; EC50 within +-25%;
ktr/ka/emax and the IIV have no reference. Priors in models/warfarin.toml are vague and
centred on NONMEM's initial estimates, not its answer. The fit here is the joint MAP (the
fast path); a NUTS fit of this model has not been run in CI (cost).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pymc")


# slow: L-BFGS needs ~3,500 iterations of a 38 ms gradient here (230-480 s on the CI machine,
# the suite's costliest test); warfarin stays in the default suite through the FOCE-I
# objective at NONMEM's estimates (test_warfarin_focei.py) and the PRED tables (test_warfarin.py)
@pytest.mark.slow
def test_warfarin_map_typical_values_inside_the_consensus(conformance):
    import il2pkpd
    from il2pkpd.inference import fit
    from il2pkpd.io.nonmem import read_nonmem_csv

    ref = json.loads((conformance / "warfarin" / "reference.json").read_text())["B_estimation_results (weak: the model is poorly identified)"]
    consensus = ref["consensus_back_transformed"]
    model = il2pkpd.load_model("warfarin")
    result = fit(model, read_nonmem_csv(conformance / "warfarin" / "data.csv"), sampler="map")
    est = result.summary["map"]
    for name, key, slack in [("cl", "CL_L_per_h", 0.05), ("v", "V_L", 0.05), ("kout", "kout_per_h", 0.05), ("e0", "E0", 0.05), ("ec50", "EC50_mg_per_L", 0.25)]:
        lo, hi = consensus[key]
        assert lo * (1 - slack) <= est[name] <= hi * (1 + slack), f"{name} = {est[name]:.4g}, consensus {lo}-{hi} (+-{slack:.0%})"
