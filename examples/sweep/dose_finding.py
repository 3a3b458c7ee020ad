"""Dose finding from a script: which dose x interval meets a Treg target without NK expansion?

    .venv/bin/python examples/sweep/dose_finding.py

SIMULATED from the IVORY model (typical population values, 100 virtual patients per regimen);
not trial data. With a stored posterior, add fit="ivory-published", draws=200 for parameter
uncertainty.
"""

import il2pkpd
from il2pkpd.design import SweepDesign, regimens_from_flags

regimens = regimens_from_flags([0.5, 1.0, 1.5, 3.0], "MIU", ["3d", "7d"], induction=5, duration="8w")
design = SweepDesign(
    "ivory", tuple(regimens), horizon=365.0, subjects=100, seed=1, solver="rodas4",
    metrics=("cmax(treg_fold)", "cmax(nk_fold)", "change(tbr, 60)"),
    targets=("cmax(treg_fold) >= 1.75 & cmax(nk_fold) < 1.5",),
)
result = il2pkpd.sweep(design, "out/dose-finding")   # rerun: finished chunks are skipped
table = result.summary.set_index("regimen")
best = table.sort_values("P(cmax(treg_fold) >= 1.75 & cmax(nk_fold) < 1.5)", ascending=False)
print(best[["cmax(treg_fold) median", "cmax(nk_fold) median", "change(tbr, 60) median",
            "P(cmax(treg_fold) >= 1.75 & cmax(nk_fold) < 1.5)"]].round(3).to_string())
