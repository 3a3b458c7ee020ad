"""Virtual trials (SYNTHETIC data): the simulated table is what the design says."""

from __future__ import annotations

import numpy as np
import pytest

from il2pkpd.design import Arm, Sample, TrialDesign, designs, simulate_trial
from il2pkpd.errors import ShapeError
from il2pkpd.io.nonmem import from_dataframe, read_nonmem_csv, write_nonmem_csv


@pytest.fixture(scope="module")
def ivory_trial(ivory):
    return simulate_trial(designs.ivory(), ivory, seed=11)


def test_ivory_trial_has_the_designed_arms_and_is_labelled_synthetic(ivory_trial):
    per_arm = ivory_trial.groupby("ARM").ID.nunique()
    assert per_arm["aldesleukin 1.5 MIU"] == 31 and per_arm["placebo"] == 29  # S12: 31:29 completed
    assert ivory_trial.ID.nunique() == 60
    assert "SIMULATED" in ivory_trial.attrs["synthetic"] and (ivory_trial.SIMULATED == 1).all()


def test_visits_doses_and_scans_follow_the_design(ivory_trial):
    treg = ivory_trial[ivory_trial.DVID == 2]
    assert sorted(treg.TIME.unique()) == [0, 4, 11, 25, 39, 53, 60]  # days 1, 5, 12, 26, 40, 54, 61 (S14)
    assert sorted(ivory_trial[ivory_trial.DVID == 3].TIME.unique()) == [0, 60]
    doses = ivory_trial[ivory_trial.EVID == 1]
    assert set(doses.ARM) == {"aldesleukin 1.5 MIU"}
    assert (doses.groupby("ID").size() == 12).all() and np.allclose(doses.groupby("ID").AMT.sum(), 18.0)


def test_every_subject_has_one_event_record_censored_at_the_horizon(ivory_trial):
    ev = ivory_trial[ivory_trial.EVENT == "mi"]
    assert len(ev) == 60 and ev.ID.is_unique
    horizon = 2 * 365.25
    assert (ev.TIME <= horizon + 1e-9).all()
    censored = ev[ev.DV == 0]
    assert set(censored.CENS_REASON) <= {"end of follow-up", "dropout"}
    assert np.allclose(censored[censored.CENS_REASON == "end of follow-up"].TIME, horizon)


def test_same_seed_same_trial(ivory):
    a = simulate_trial(designs.lilacs(), ivory, seed=5)
    b = simulate_trial(designs.lilacs(), ivory, seed=5)
    c = simulate_trial(designs.lilacs(), ivory, seed=6)
    assert a.equals(b) and not a.equals(c)


def test_tbr_measurement_error_matches_the_design_value(ivory):
    # TBR residual SD 0.11 in ivory.toml (within-subject SD from the ICC, BRIEF S82 / 5.3)
    design = TrialDesign("tbr-noise", (Arm("placebo", None, 1500),), (Sample("tbr", (0.0, 60.0)),), randomisation="sequential")
    table = simulate_trial(design, ivory, seed=2)
    resid = table.DV - table.IPRED
    assert resid.std() == pytest.approx(0.11, rel=0.10)


def test_trial_writes_as_nonmem_csv_and_reads_back(ivory, ivory_trial, tmp_path):
    path = write_nonmem_csv(ivory_trial, tmp_path / "ivory_synthetic.csv")
    data = read_nonmem_csv(path)
    subjects = data.subject_records(ivory)
    assert len(subjects) == 60
    assert sum(len(s.doses) for s in subjects) == 31 * 12
    assert from_dataframe(ivory_trial).problems(ivory) == []


def test_blocked_randomisation_balances_each_block(ivory):
    design = TrialDesign("blocks", (Arm("a", "1 MIU sc once", 4), Arm("b", None, 4)), (Sample("treg", (0.0,)),))
    table = simulate_trial(design, ivory, seed=3)
    arms = table.drop_duplicates("ID").sort_values("ID").ARMN.to_numpy()
    assert sorted(arms[:2]) == [0, 1] and sorted(arms[2:4]) == [0, 1]


def test_bad_designs_are_refused(ivory):
    with pytest.raises(ShapeError, match="'pet'"):
        simulate_trial(TrialDesign("x", (Arm("a", None, 2),), (Sample("pet", (0.0,)),)), ivory)
    with pytest.raises(ShapeError, match="followup"):
        TrialDesign("x", (Arm("a", None, 2),), (), events=("mi",))
    with pytest.raises(ShapeError, match="integer >= 1"):
        Arm("a", None, 0)
