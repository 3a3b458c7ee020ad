"""Writes notebooks/*.ipynb (run from the repository root: .venv/bin/python notebooks/_build_notebooks.py).

The notebooks are kept as code here so that reviews see plain Python; outputs are not committed.
"""
import nbformat as nbf
cells: list = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s))  # noqa: E731
code = lambda s: cells.append(nbf.v4.new_code_cell(s))  # noqa: E731


def write(name: str) -> None:
    """Write the cells gathered so far as notebooks/<name>.ipynb and start a new notebook."""
    nb = nbf.v4.new_notebook(cells=list(cells), metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbf.write(nb, f"notebooks/{name}.ipynb")
    cells.clear()


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


write("virtual_ivory_fit")

# ---------------------------------------------------------------------------------------------
md("""# From the posterior to a regimen and a sample size

What this notebook does, with the shipped posterior of the IVORY model
(`fits/ivory-published`, calibrated to published aggregate data):

1. exposure-response over dose and interval, with the therapeutic window;
2. the probability of the target against dose;
3. the regimen that maximises the probability of the Treg target under an NK bound and a
   total-dose cap (`optimize_regimen`);
4. assurance (power averaged over the posterior) against sample size for a phase 2b trial with
   the PET endpoint (ANCOVA of TBR at day 61 on baseline) and for a phase 3 trial with
   recurrent MI (log-rank), and the sample size for 80% assurance.

**Read the numbers with their provenance.** Everything simulated here is model output, not
trial data. The shipped posterior is a Laplace (normal) approximation, not a sampled
posterior (`fits/README.md`: Pareto k-hat 0.75), and its TBR-to-event link is still at its
prior (issue 16): the MI assurance below reflects that prior, not evidence. The Treg target
(+75%, `cmax(treg_fold) >= 1.75`) is LILACS's ED75 endpoint [BRIEF S22, S24]; the NK bound
(`cmax(nk_fold) < 1.5`) is an illustrative safety margin [I].

Settings: the test suite runs this notebook with `IL2PKPD_NOTEBOOK_SMALL=1` (a few draws,
subjects and trials: every cell runs, the numbers are not decision grade). Leave it unset for
a real run (minutes to an hour or more on a laptop CPU).""")
code("""import os
import warnings

import matplotlib.pyplot as plt
import numpy as np

import il2pkpd
from il2pkpd.design import Arm, Sample, SweepDesign, TrialDesign, designs, optimize_regimen, regimens_from_flags, trial_power
from il2pkpd.io.fits import load_fit
from il2pkpd.plot import plot_dose_response, plot_power_curve

SMALL = os.environ.get("IL2PKPD_NOTEBOOK_SMALL") == "1"
DRAWS = 4 if SMALL else 100          # posterior draws
SUBJECTS = 3 if SMALL else 20        # virtual subjects per draw (IIV)
TRIALS = 12 if SMALL else 1000       # virtual trials per sample size
model = il2pkpd.load_model("ivory")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    posterior = load_fit("ivory-published", model=model)
print(f"{'SMALL (CI) settings' if SMALL else 'full settings'}: {DRAWS} draws x {SUBJECTS} subjects; {TRIALS} trials per size")""")
md("""## 1. Exposure-response and the therapeutic window

A sweep over dose (5 daily induction doses, then every 3 or 7 days for 8 weeks), over posterior
draws and virtual subjects: the Treg peak against its target and the NK peak against its bound
(median and 5-95% over draws and subjects).""")
code("""doses = [0.3, 1.0, 2.0, 3.0] if SMALL else [0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0]
TARGET = "cmax(treg_fold) >= 1.75 & cmax(nk_fold) < 1.5"
sweep = il2pkpd.sweep(SweepDesign("ivory", tuple(regimens_from_flags(doses, "MIU", ["3d", "7d"], induction=5, duration="8w")),
                                  horizon=90.0, draws=DRAWS, subjects=SUBJECTS, fit="ivory-published",
                                  metrics=("cmax(treg_fold)", "cmax(nk_fold)"), targets=(TARGET,)))
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), layout="constrained")
plot_dose_response(sweep.summary, "cmax(treg_fold)", window=(1.75, None), ax=axes[0])
plot_dose_response(sweep.summary, "cmax(nk_fold)", window=(None, 1.5), ax=axes[1])
plot_dose_response(sweep.summary, f"P({TARGET})", ax=axes[2])
axes[2].set_ylim(0, 1);""")
md("""## 2. The regimen that maximises the probability of the target

Over a continuous dose (0.3-3 MIU) and a maintenance interval of 3 or 7 days after 5 daily
doses: maximise P(Treg peak >= 1.75-fold) subject to P(NK peak >= 1.5-fold) <= 0.1 and at most
25 MIU in all. Gradients come from JAX through the ODE solver; the probabilities are smoothed
for the optimiser and reported exactly.""")
code("""with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    best = optimize_regimen(model, posterior, draws=DRAWS, objective="maximise P(cmax(treg_fold) >= 1.75)",
                            constraints=["P(cmax(nk_fold) >= 1.5) <= 0.1", "total_dose <= 25"],
                            space="dose=0.3..3; interval=3d,7d", regimen="{dose} MIU sc qd x5 then {dose} MIU sc q{interval} x7",
                            horizon=90.0, subjects=SUBJECTS, seed=1)
print(best.summary())
import pandas as pd

pd.DataFrame(best.quantities)""")
md("""`quantities`: the mean over every draw and subject, the 5-95% range of the per-draw values
(parameter uncertainty) and the Monte Carlo SE. `candidates` lists the best point of each
interval with the optimiser's record.""")
code("""pd.DataFrame(best.candidates)[["regimen", "objective", "feasible", "iterations", "message"]]""")
md("""## 3. Phase 2b: assurance of the PET endpoint against sample size

The recommended regimen against placebo, 1:1, TBR at baseline and day 61, analysed by ANCOVA
on baseline (as IVORY was): assurance at each total sample size, and the size for 80%.""")
code("""regimen = best.regimen or designs.IVORY_REGIMEN
pet = TrialDesign("phase 2b (PET)", (Arm("aldesleukin", regimen, 1), Arm("placebo", None, 1)), (Sample("tbr", (0.0, 60.0)),))
sizes = [20, 60] if SMALL else [20, 40, 60, 80, 120]
phase2 = trial_power(model, pet, ["ancova(tbr, 60)"], sizes, n_trials=TRIALS, params=posterior, draws=DRAWS, target=0.8, seed=2)
plot_power_curve(phase2.table, target=0.8)
print("N for 80% assurance:", phase2.sample_size)
phase2.table""")
md("""## 4. Phase 3: assurance of recurrent MI against sample size

Two-year follow-up, 4.3% dropout per year, log-rank. The event link is at its prior in this
posterior (issue 16), so this assurance is mostly prior uncertainty about the TBR-event link:
a planning exercise, not evidence that a phase 3 of this size would succeed.""")
code("""mace = TrialDesign("phase 3 (MI)", pet.arms, (), followup=730.0, events=("mi",), dropout_per_year=0.043)
sizes3 = [200, 400] if SMALL else [500, 1000, 2000, 4000]
phase3 = trial_power(model, mace, ["logrank(mi)"], sizes3, n_trials=max(4, TRIALS // 10), params=posterior, draws=DRAWS, target=0.8,
                     seed=3, grid_step=7.0)
plot_power_curve(phase3.table, target=0.8)
phase3.table""")
md("""The phase 3 curve uses a tenth of the trials of the phase 2b one (each trial is thousands of
two-year simulations); its Monte Carlo errors are in the table. With the CI settings every
number here is noise: the point is that each step runs.""")
write("dose_finding")
