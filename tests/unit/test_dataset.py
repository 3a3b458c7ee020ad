"""NONMEM-style datasets: each problem is a DataFormatError naming the row, subject and value."""

from __future__ import annotations

import numpy as np
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
    with pytest.raises(DataFormatError, match=r"row 3 \(subject 1\): `TIME` must be non-decreasing within a subject, got 0.5 after 1.0"):
        records(tmp_path, bad, pk1)


def test_unknown_cmt_names_the_row(tmp_path, pk1):
    bad = GOOD.replace("2,0,1,50,1,", "2,0,1,50,7,")
    with pytest.raises(DataFormatError, match=r"row 4 \(subject 2\): `CMT` must be one of \[1, 2\] for model 'pk1_oral', got 7"):
        records(tmp_path, bad, pk1)


def test_non_numeric_value_names_the_row(tmp_path, pk1):
    bad = GOOD.replace("1,1,0,0,2,3.1", "1,one,0,0,2,3.1")
    with pytest.raises(DataFormatError, match=r"row 2 \(subject 1\): column `TIME` must be numeric, got 'one'"):
        records(tmp_path, bad, pk1)


def test_negative_amount_names_the_row(tmp_path, pk1):
    bad = GOOD.replace("2,0,1,50,1,", "2,0,1,-50,1,")
    with pytest.raises(DataFormatError, match=r"row 4 \(subject 2\): `AMT` of a dose must be > 0, got -50.0"):
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


def test_every_problem_is_reported_at_once(tmp_path, pk1):
    bad = """ID,TIME,EVID,AMT,CMT,DV,DVID,SS,II,ADDL
1,0,1,100,1,,0,0,0,0
1,1,0,0,2,3.1,1,0,0,0
1,0.5,0,0,2,2.9,1,0,0,0
1,2,7,0,2,,0,0,0,0
2,0,1,-5,1,,0,0,0,0
2,0,1,50,1,,0,1,0,0
2,0,1,50,1,,0,0,0,3
2,1,0,0,9,,1,0,0,0
2,1,0,0,2,x,1,0,0,0
2,2,0,0,2,1.0,4,0,0,0
2,2,0,0,2,1.0,4,0,0,0
"""
    data = read_nonmem_csv(write(tmp_path, bad))
    with pytest.raises(DataFormatError) as err:
        data.validate(pk1, require_dv=True)
    problems = err.value.problems
    expected = [
        "row 3 (subject 1): `TIME` must be non-decreasing within a subject, got 0.5 after 1.0",
        "row 4 (subject 1): `EVID` must be 0, 1, 2, 3 or 4, got 7.0",
        "row 5 (subject 2): `AMT` of a dose must be > 0, got -5.0",
        "row 6 (subject 2): `SS` = 1 needs `II` > 0, got II = 0.0",
        "row 7 (subject 2): `ADDL` = 3 needs `II` > 0, got II = 0.0",
        "row 8 (subject 2): `CMT` must be one of [1, 2] for model 'pk1_oral', got 9",
        "row 9 (subject 2): column `DV` must be numeric, got 'x'",
        "row 8 (subject 2): observation (EVID 0, MDV 0) without `DV`",
        "row 10 (subject 2): `DVID` must be one of [1] for model 'pk1_oral', got 4",
        "row 11 (subject 2): duplicates row 10",
    ]
    for e in expected:
        assert e in problems, f"missing: {e}\ngot: {problems}"
    assert f"{len(problems)} problems in the dataset" in str(err.value)


def test_observations_without_dv_are_fine_for_prediction(tmp_path, pk1):
    data = read_nonmem_csv(write(tmp_path, "ID,TIME,EVID,AMT,CMT,DV\n1,0,1,100,1,\n1,1,0,0,2,\n"))
    assert data.problems(pk1) == []
    assert data.problems(pk1, require_dv=True) == ["row 2 (subject 1): observation (EVID 0, MDV 0) without `DV`"]


def test_nonmem_csv_round_trip_preserves_every_record(tmp_path, conformance):
    from il2pkpd.io.nonmem import write_nonmem_csv

    for src in (conformance / "nonmem-dosing" / "data.csv", conformance / "warfarin" / "data.csv"):
        first = read_nonmem_csv(src)
        out = write_nonmem_csv(first, tmp_path / src.parent.name / "copy.csv")
        second = read_nonmem_csv(out)
        pd.testing.assert_frame_equal(first.table, second.table)
        assert len(second.table) == len(pd.read_csv(src))


def test_records_to_table_round_trip(tmp_path, pk1):
    from il2pkpd.dosing import Record, Records
    from il2pkpd.io.nonmem import records_to_table, write_nonmem_csv

    subjects = [
        Records([Record(0, 1, 100.0, 1, ii=12, addl=2, row=0), Record(1, 0, cmt=2, dvid=1, row=1), Record(30, 0, cmt=2, dvid=1, row=2)], subject=1),
        Records([Record(0, 1, 50.0, 2, rate=25.0, row=0), Record(4, 3, row=1), Record(5, 0, cmt=2, dvid=1, row=2)], subject=2),
    ]
    path = write_nonmem_csv(records_to_table(subjects), tmp_path / "r.csv")
    back = read_nonmem_csv(path).subject_records(pk1)
    strip = lambda rs: [(r.time, r.evid, r.amt, r.cmt, r.rate, r.ii, r.addl, r.ss, r.dvid) for r in rs]  # noqa: E731
    assert [strip(s) for s in back] == [strip(s) for s in subjects]
    assert [s.subject for s in back] == [1, 2]


def test_blq_flags_and_lloq_are_checked(tmp_path, pk1):
    text = "ID,TIME,EVID,AMT,CMT,DV,CENS,LLOQ\n1,0,1,100,1,,0,\n1,1,0,0,2,0.05,1,0.05\n1,2,0,0,2,0.1,2,0.05\n1,3,0,0,2,0.05,1,0\n"
    problems = read_nonmem_csv(write(tmp_path, text)).problems(pk1)
    assert problems == [
        "row 3 (subject 1): `CENS` must be -1, 0 or 1, got 2.0",
        "row 4 (subject 1): below-LLOQ record (`CENS` = 1) needs `LLOQ` > 0, got 0.0",
    ]


def test_mdv_1_observation_rows_are_not_observations(tmp_path, pk1):
    """NONMEM: EVID 0 with MDV 1 is an output row whose DV is ignored (not fitted)."""
    subj = records(tmp_path, "ID,TIME,EVID,AMT,CMT,DV,MDV\n1,0,1,100,1,,1\n1,0,0,0,2,0.74,1\n1,1,0,0,2,3.1,0\n", pk1)[0]
    assert [r.evid for r in subj] == [1, 2, 0]


def test_a_zero_prediction_under_proportional_error_is_named_before_fitting(tmp_path, pk1):
    """A pre-dose sample predicted exactly 0 has SD 0 under a proportional error: the fit
    refuses it naming the row, instead of the sampler failing on a NaN log-density."""
    pytest.importorskip("pymc")
    from il2pkpd.inference import build_pymc_model

    text = "ID,TIME,EVID,AMT,CMT,DV\n1,0,0,0,2,0.74\n1,0,1,100,1,\n1,1,0,0,2,3.1\n2,0,1,50,1,\n2,1,0,0,2,1.5\n"
    with pytest.raises(DataFormatError, match=r"subject 1 row 1 \(time 0, cp\).*MDV = 1"):
        build_pymc_model(pk1, records(tmp_path, text, pk1))
    # the same rows with MDV: the pre-dose sample (MDV 1) is no longer an observation
    ok = "ID,TIME,EVID,AMT,CMT,DV,MDV\n1,0,0,0,2,0.74,1\n1,0,1,100,1,,1\n1,1,0,0,2,3.1,0\n2,0,1,50,1,,1\n2,1,0,0,2,1.5,0\n"
    pmodel = build_pymc_model(pk1, records(tmp_path, ok, pk1))
    assert np.isfinite(pmodel.compile_logp(mode="JAX")(pmodel.initial_point()))
