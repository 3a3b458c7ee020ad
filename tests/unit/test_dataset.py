"""NONMEM-style datasets: each problem is a DataFormatError naming the row, subject and value."""

from __future__ import annotations

import pandas as pd
import pytest

from il2pkpd import DataFormatError
from il2pkpd.io.nonmem import from_dataframe, read_nonmem_csv

GOOD = """ID,TIME,EVID,AMT,CMT,DV
1,0,1,100,1,
1,1,0,0,2,3.1
1,2,0,0,2,2.9
2,0,1,50,1,
2,1,0,0,2,1.5
"""


def write(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def records(tmp_path, text, model):
    return read_nonmem_csv(write(tmp_path, text)).subject_records(model)


def test_good_dataset_reads_every_row(tmp_path, pk1):
    subj = records(tmp_path, GOOD, pk1)
    assert [len(s) for s in subj] == [3, 2]
    assert subj[0][0].amt == 100 and subj[0][0].evid == 1


def test_lower_case_columns_are_accepted(tmp_path, pk1):
    subj = records(tmp_path, GOOD.lower(), pk1)
    assert len(subj) == 2


def test_missing_required_column_is_named(tmp_path):
    with pytest.raises(DataFormatError, match="missing required column `TIME`"):
        read_nonmem_csv(write(tmp_path, "ID,AMT\n1,100\n"))


def test_time_going_backwards_names_subject_and_row(tmp_path, pk1):
    bad = GOOD.replace("1,2,0,0,2,2.9", "1,0.5,0,0,2,2.9")
    with pytest.raises(DataFormatError, match=r"subject 1 row 3 has 0.5 after 1.0"):
        records(tmp_path, bad, pk1)


def test_unknown_cmt_names_the_row(tmp_path, pk1):
    bad = GOOD.replace("2,0,1,50,1,", "2,0,1,50,7,")
    with pytest.raises(DataFormatError, match=r"`CMT` must be one of \[1, 2\].*row 4 \(subject 2\) has 7"):
        records(tmp_path, bad, pk1)


def test_non_numeric_value_names_the_row(tmp_path, pk1):
    bad = GOOD.replace("1,1,0,0,2,3.1", "1,one,0,0,2,3.1")
    with pytest.raises(DataFormatError, match=r"column `TIME` must be numeric; row 2 \(subject 1\) has 'one'"):
        records(tmp_path, bad, pk1)


def test_negative_amount_names_the_row(tmp_path, pk1):
    bad = GOOD.replace("2,0,1,50,1,", "2,0,1,-50,1,")
    with pytest.raises(DataFormatError, match=r"`AMT` of a dose must be > 0, got -50.0 \(subject 2 row 4\)"):
        records(tmp_path, bad, pk1)


def test_addl_without_ii_is_refused(tmp_path, pk1):
    bad = "ID,TIME,EVID,AMT,CMT,ADDL\n1,0,1,100,1,3\n1,1,0,0,2,0\n"
    with pytest.raises(DataFormatError, match=r"`ADDL` = 3 needs `II` > 0"):
        records(tmp_path, bad, pk1)


def test_parameter_column_varying_within_subject_is_refused(tmp_path, pk1):
    bad = "ID,TIME,EVID,AMT,CMT,CL\n1,0,1,100,1,2\n1,1,0,0,2,3\n"
    with pytest.raises(DataFormatError, match=r"column `CL` .*constant within a subject.*row 2 has 3.0 after 2.0"):
        read_nonmem_csv(write(tmp_path, bad)).subject_values(pk1)


def test_missing_file_is_a_data_format_error(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        read_nonmem_csv(tmp_path / "nope.csv")


def test_columns_differing_in_case_prefer_the_upper_case_nonmem_name():
    df = pd.DataFrame({"ID": [1], "TIME": [0.0], "dvid": ["cp"], "DVID": [1]})
    data = from_dataframe(df)
    assert data.columns["dvid"] == "DVID"
    with pytest.raises(DataFormatError, match="differ only in case"):
        from_dataframe(pd.DataFrame({"ID": [1], "TIME": [0], "Amt": [1], "aMT": [2]}))
