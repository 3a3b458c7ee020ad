"""pk1_oral fitted by NUTS to the standard single-dose oral PK dataset (theophylline)
agrees with R's nlme maximum-likelihood fit of the same model.

Reference: tests/reference/data/theoph/nlme.json, written by theoph_nlme.R from R's
`datasets::Theoph` (R 4.2.2, nlme 3.1-162; see that folder's README). Priors in
models/pk1_oral.toml are vague (log-normal, sigma 2, around ka 1/h, CL 1 L/h, V 20 L), so
the posterior is dominated by the likelihood: nlme's estimates must lie inside the
posterior's 90% intervals, and the well-determined typical CL and V and the residual SD
must agree to 10% (posterior median vs ML estimate). Short chains (2 x 300) keep CI time
near two minutes; the full run in the README used 2 x 400.

Solver: Rodas4 at fit()'s default tolerances (rtol 1e-6, atol 1e-9), not fit()'s default
Tsit5, at the same tolerances: the joint log-likelihood of the 12 subjects agrees to 3e-10
relative (Rodas4 -1474.51175772, Tsit5 -1474.51175814 at one test point), and its gradient
is ~4x cheaper for this model (2.3 vs 9.4 ms; 8 vs 13 s to compile), which is most of this
test's time (CPU 274 -> 117 s). nlme's values and the tolerances are unchanged. NUTS through fit() with the default solver runs in the default suite in
notebooks/virtual_ivory_fit.ipynb (tests/integration/test_notebooks.py).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nutpie")

HERE = Path(__file__).parent / "data" / "theoph"


def test_pk1_oral_nuts_fit_of_theophylline_agrees_with_nlme():
    import il2pkpd

    ref = json.loads((HERE / "nlme.json").read_text())
    model = il2pkpd.load_model("pk1_oral")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = il2pkpd.fit(model, HERE / "data.csv", draws=300, tune=300, chains=2, sampler="nutpie", seed=1, predictive_draws=0,
                          options=il2pkpd.SolverOptions(solver="rodas4", rtol=1e-6, atol=1e-9))
    # short chains earn convergence warnings (ka mixes slowly); nothing else may be raised
    others = [str(w.message) for w in caught if not issubclass(w.category, il2pkpd.Il2pkpdWarning)]
    assert not others, others
    assert fit.info["n_subjects"] == ref["n_subjects"] == 12
    post = fit.idata["posterior"]
    want = {**ref["typical"], **{f"omega_{k}": v for k, v in ref["omega"].items()}, "sigma_cp": ref["sigma_cp"]}
    for name, value in want.items():
        x = np.asarray(post[name].values).ravel()
        lo, hi = np.quantile(x, [0.05, 0.95])
        assert lo <= value <= hi, f"{name}: nlme {value:.4g} outside the posterior 90% interval [{lo:.4g}, {hi:.4g}]"
    for name in ("cl", "v", "sigma_cp"):
        med = float(np.median(np.asarray(post[name].values)))
        assert med == pytest.approx(want[name], rel=0.10), f"{name}: posterior median {med:.4g} vs nlme {want[name]:.4g}"
    assert fit.info["divergences"] <= 6  # < 1% of 600 draws
