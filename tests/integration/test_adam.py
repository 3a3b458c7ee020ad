"""CDISC ADaM round trips (SYNTHETIC virtual-trial data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from il2pkpd import DataFormatError
from il2pkpd.design import designs, simulate_trial
from il2pkpd.io.adam import from_adam, read_adam, to_adam, write_adam
from il2pkpd.io.nonmem import from_dataframe

KEY = ["ID", "TIME", "EVID", "AMT", "CMT", "DVID", "DV"]


@pytest.fixture(scope="module")
def trial(ivory):
    return simulate_trial(designs.ivory(n_il2=4, n_placebo=3), ivory, seed=4)


def _sorted(df):
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def test_adam_to_internal_to_adam_preserves_every_record(ivory, trial, tmp_path):
    first = to_adam(trial, ivory, study="SIM")
    write_adam(first, tmp_path)
    back = read_adam(tmp_path)
    second = to_adam(from_adam(back, ivory), ivory, study="SIM")
    for name, df in first.items():
        assert len(df) == len(second[name]), name
        pd.testing.assert_frame_equal(_sorted(df), _sorted(second[name]), check_dtype=False, obj=name)


def test_internal_to_adam_to_internal_keeps_the_records(ivory, trial):
    back = from_adam(to_adam(trial, ivory), ivory)
    a = trial[KEY].sort_values(KEY).reset_index(drop=True)
    b = back[KEY].sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert from_dataframe(back).problems(ivory) == []
    assert (back.groupby("ID").SIMULATED.first() == 1).all()


def test_domains_have_the_cdisc_columns(ivory, trial):
    d = to_adam(trial, ivory)
    assert {"STUDYID", "USUBJID", "TRT01A", "BSA"} <= set(d["ADSL"].columns)
    assert set(d["ADLB"].PARAMCD) == {"TREGFC", "NKFC", "TBRMAX"}
    assert set(d["ADTTE"].PARAMCD) == {"MI"} and set(d["ADTTE"].CNSR) <= {0, 1}
    assert (d["EX"].EXROUTE == "SUBCUTANEOUS").all() and (d["EX"].EXDOSU == "MIU").all()
    # study days: no day 0; the first dose is day 1 (t = 0)
    assert d["EX"].EXSTDY.min() == 1 and sorted(d["ADLB"][d["ADLB"].PARAMCD == "TBRMAX"].ADY.unique()) == [1, 61]


def test_study_days_alone_give_times(ivory):
    adsl = pd.DataFrame({"USUBJID": ["A"], "BSA": [1.8]})
    adlb = pd.DataFrame({"USUBJID": ["A", "A"], "PARAMCD": ["TREGFC", "TREGFC"], "AVAL": [1.0, 1.6], "ADY": [-1, 6]})
    ex = pd.DataFrame({"USUBJID": ["A"], "EXDOSE": [91.7], "EXDOSU": ["ug"], "EXSTDY": [1], "EXROUTE": ["SUBCUTANEOUS"]})
    t = from_adam({"ADSL": adsl, "ADLB": adlb, "EX": ex}, ivory)
    assert list(t.TIME) == [-1.0, 0.0, 5.0]
    assert t.AMT[t.EVID == 1].iloc[0] == pytest.approx(1.5, rel=1e-3)  # 91.7 ug = 1.5 MIU (S28)
    assert t.BSA.iloc[0] == 1.8


def test_adam_problems_name_the_domain_and_row(ivory):
    adsl = pd.DataFrame({"USUBJID": ["A"]})
    with pytest.raises(DataFormatError, match=r"ADLB row 2: PARAMCD 'CRP'"):
        from_adam({"ADSL": adsl, "ADLB": pd.DataFrame({"USUBJID": ["A", "A"], "PARAMCD": ["TREGFC", "CRP"], "AVAL": [1, 2], "ADY": [1, 2]})}, ivory)
    with pytest.raises(DataFormatError, match=r"EX row 1: USUBJID 'B' is not in ADSL"):
        from_adam({"ADSL": adsl, "EX": pd.DataFrame({"USUBJID": ["B"], "EXDOSE": [1.0], "EXSTDY": [1]})}, ivory)
    with pytest.raises(DataFormatError, match="ADSL"):
        from_adam({"EX": pd.DataFrame()}, ivory)


def test_adsl_demographics_and_mapped_covariates_round_trip(ivory):
    adsl = pd.DataFrame({"USUBJID": ["A", "B"], "TRT01A": ["IL-2", "placebo"], "AGE": [55, 61], "SEX": ["M", "F"],
                         "WEIGHTBL": [80.0, 62.0], "BSABL": [1.98, 1.66], "RANDDT": ["2021-03-01", "2021-03-08"]})
    adlb = pd.DataFrame({"USUBJID": ["A", "B"], "PARAMCD": ["TBRMAX", "TBRMAX"], "AVAL": [2.4, 2.2], "ADY": [1, 1]})
    table = from_adam({"ADSL": adsl, "ADLB": adlb}, ivory, covariates={"BSABL": "bsa"})
    assert list(table.BSA) == [1.98, 1.66] and list(table.SEX) == ["M", "F"] and list(table.AGE) == [55, 61]
    again = to_adam(table, ivory)["ADSL"]
    assert list(again.RANDDT) == ["2021-03-01", "2021-03-08"] and list(again.WEIGHTBL) == [80.0, 62.0]
