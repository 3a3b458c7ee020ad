"""The default IVORY model at its typical values meets the BRIEF's sanity targets.

* 1.5 MIU s.c. gives a Cmax of 10-50 pM, above 10 pM for roughly 8-24 h (BRIEF 8.1 sanity
  check, from Konrad's 2% rule and Piscitelli's dose-normalised Cmax: S31, S35);
* five daily doses of ~1.5 MIU raise Tregs by roughly +75% the day after the last dose
  (LILACS ED75 = 1.46 MIU, 95% CI 1.06-1.87: S22); "roughly" is taken as 1.60-1.90 fold;
* Tregs rise monotonically with dose (LILACS part A: S24).
These are the targets the issue names; calibration proper is the inference work.
"""

from __future__ import annotations

import numpy as np

import il2pkpd


def test_single_dose_cmax_in_published_range(ivory):
    t = np.arange(0.0, 2.0, 1.0 / 96)  # every 15 min
    conc = il2pkpd.simulate(ivory, "1.5 MIU sc once", t)["conc"].values[0]
    assert 10.0 <= conc.max() <= 50.0
    hours_above_10pm = np.sum(conc > 10.0) * 0.25
    assert 5.0 <= hours_above_10pm <= 24.0


def test_five_daily_doses_give_about_75_percent_more_tregs(ivory):
    ds = il2pkpd.simulate(ivory, "1.46 MIU sc qd x5", np.array([0.0, 5.0]))  # day 6 = t 5
    fold = float(ds["treg_fold"].values[0, 1])
    assert 1.60 <= fold <= 1.90


def test_treg_response_rises_with_dose(ivory):
    doses = [0.3, 0.6, 1.2, 2.4, 3.0]  # LILACS part A dose levels (S24)
    folds = [float(il2pkpd.simulate(ivory, f"{d} MIU sc qd x5", np.array([5.0]))["treg_fold"].values[0, 0]) for d in doses]
    assert np.all(np.diff(folds) > 0)
