"""Writes notebooks/*.ipynb (run from the repository root: .venv/bin/python notebooks/_build_notebooks.py).

The notebooks are kept as code here so that reviews see plain Python; outputs are not committed.
"""
import nbformat as nbf
cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s))
code = lambda s: cells.append(nbf.v4.new_code_cell(s))
md("""# Fitting a virtual IVORY trial end to end

**Everything here is SYNTHETIC.** IVORY's individual data are not public: we simulate a virtual
trial from the IVORY model at known ("true") parameter values, fit the model back by NUTS with
exact JAX gradients through the ODE solution, run the diagnostics a pharmacometrician expects,
and compare the posterior with the truth.

Settings: the test suite runs this notebook with `IL2PKPD_NOTEBOOK_SMALL=1` (a handful of
subjects, very short chains: the point there is that every cell runs, not that the fit
converges). For a real run leave it unset; expect minutes to hours on a laptop CPU (see
`benchmarks/README.md`).""")
code("""import os
import warnings

import numpy as np

import il2pkpd
from il2pkpd import diagnostics
from il2pkpd.design import Arm, Sample, TrialDesign, simulate_trial
from il2pkpd.inference import fit
from il2pkpd.io.nonmem import from_dataframe
from il2pkpd.plot import plot_gof, plot_vpc

SMALL = os.environ.get("IL2PKPD_NOTEBOOK_SMALL") == "1"
N_PER_ARM = 3 if SMALL else 30
DRAWS, TUNE, CHAINS = (15, 15, 2) if SMALL else (1000, 1000, 4)
print(f"{'SMALL (CI) settings' if SMALL else 'full settings'}: {N_PER_ARM} per arm, {CHAINS} x {DRAWS} draws")""")
md("""## 1. The model and the parameters we estimate

The full IVORY model has 35 parameters; a 60-subject trial with Treg and PET visits cannot
identify all of them (the MI hazard needs events, the PK needs concentrations). We estimate the
Treg-response and TBR parameters this design informs and fix the rest at their typical values.""")
code("""model = il2pkpd.load_model("ivory")
ESTIMATE = ["kprol", "ec50", "treg0", "tbr0", "imax"]
fit_model = model.estimate_only(*ESTIMATE)
TRUTH = {"kprol": 0.9, "ec50": 8.0, "treg0": 5.0, "tbr0": 2.3, "imax": 0.5}
{p.name: (p.value, p.prior) for p in model.parameters if p.name in ESTIMATE}""")
md("""## 2. A virtual trial (synthetic)

IL-2 1.5 MIU s.c. daily x5 then weekly x7 vs placebo; Treg at the IVORY registry visits and
TBR at baseline and day 61. Residual errors come from the model file's error models.""")
code("""design = TrialDesign(
    "virtual IVORY (synthetic)",
    (Arm("IL-2", "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7", N_PER_ARM), Arm("placebo", None, N_PER_ARM)),
    (Sample("treg", (0.0, 4.0, 11.0, 25.0, 39.0, 53.0, 60.0)), Sample("tbr", (0.0, 60.0))),
)
truth_model = model.with_values(**TRUTH)
trial = simulate_trial(design, truth_model, seed=11)
trial.head()""")
md("## 3. Fit by NUTS (nutpie, JAX log-density and gradient)")
code("""data = from_dataframe(trial[trial.EVID != 2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = fit(fit_model, data, draws=DRAWS, tune=TUNE, chains=CHAINS, seed=1, predictive_draws=20 if SMALL else 200)
for w in caught:
    if issubclass(w.category, il2pkpd.Il2pkpdWarning):
        print("warning:", w.message)
result.summary""")
md("""## 4. Diagnostics

Convergence (R-hat, ESS, divergences) is in the summary and the warnings above. ArviZ's trace
and rank plots apply directly to `result.idata`. Below: GOF panels, a prediction-corrected VPC
of the Treg data, and leave-one-subject-out PSIS-LOO.""")
code("""# the dataset itself (records and covariate columns), as given to fit()
gof = diagnostics.gof_table(result, fit_model, data)
plot_gof(gof);""")
code("""vpc = diagnostics.pc_vpc(result, fit_model, data, "treg", n_rep=20 if SMALL else 200, bins=4 if SMALL else 7)
plot_vpc(vpc, "pcVPC: Treg (synthetic virtual IVORY trial)")
vpc""")
code("""try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        elpd = diagnostics.loo(result)
except il2pkpd.OptionError as err:  # the CI settings keep too few draws
    elpd = f"not computed: {err}"
elpd""")
code("""import arviz as az

az.plot_rank(result.idata, var_names=ESTIMATE);""")
md("## 5. Posterior against the truth")
code("""rows = []
for name, true in TRUTH.items():
    draws = result.population_draws()[name]
    lo, hi = np.quantile(draws, [0.05, 0.95])
    rows.append((name, true, float(np.mean(draws)), lo, hi, lo <= true <= hi))
import pandas as pd

comparison = pd.DataFrame(rows, columns=["parameter", "truth", "posterior mean", "5%", "95%", "truth in 90% interval"])
comparison""")
md("""With the full settings every identifiable parameter should have its truth inside its 90%
interval (about one in ten would miss by chance). With the CI settings the chains are far too
short for that statement; the cell runs, and the warnings above say why the numbers are not to
be trusted.""")
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbf.write(nb, "notebooks/virtual_ivory_fit.ipynb")
