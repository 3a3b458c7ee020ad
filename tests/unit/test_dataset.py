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


# -- issue 12, item 6: silent data errors -------------------------------------------------


def test_non_integer_id_is_refused_naming_row_and_value(tmp_path, pk1):
    """Issue 12: ID 1.5 between two rows of subject 1 was read as a third subject, and
    subject 1's observation after it lost the dose. NONMEM's IDs are integers and a change
    of ID between consecutive rows starts a new subject: refuse it, in one line."""
    text = "ID,TIME,EVID,AMT,CMT,DV\n1,0,1,100,1,\n1.5,1,0,0,2,3\n1,2,0,0,2,3\n"
    with pytest.raises(DataFormatError) as err:
        read_nonmem_csv(write(tmp_path, text))
    msg = str(err.value)
    assert "\n" not in msg and "`ID` must be an integer" in msg and "'1.5' on row 2" in msg


def test_a_subject_whose_rows_are_not_contiguous_is_refused(tmp_path):
    """NONMEM would read the second block of ID 1 as a new subject; il2pkpd used to merge it.
    Neither is safe without a word."""
    text = "ID,TIME,EVID,AMT,CMT,DV\n1,0,1,100,1,\n2,0,1,100,1,\n1,1,0,0,2,3\n"
    with pytest.raises(DataFormatError, match=r"`ID` 1 on row 3 was used before on row 1, with other subjects in between"):
        read_nonmem_csv(write(tmp_path, text))


def test_one_subject_id_written_two_ways_is_refused(tmp_path):
    text = "ID,TIME,EVID,AMT,CMT,DV\n1,0,1,100,1,\n1.0,1,0,0,2,3\n"
    with pytest.raises(DataFormatError, match=r"`ID` of subject 1 is written '1.0' on row 2 but '1' on row 1"):
        read_nonmem_csv(write(tmp_path, text))


def test_integer_ids_written_as_floats_and_text_ids_are_subjects(tmp_path, pk1):
    subj = records(tmp_path, "ID,TIME,EVID,AMT,CMT\n2.0,0,1,100,1\n2.0,1,0,0,2\n1e3,0,1,5,1\nP 7,0,1,5,1\n١,0,1,5,1\n", pk1)
    assert [s.subject for s in subj] == [2, 1000, "P 7", "١"]  # '١' (an Arabic-Indic one) is a text label, not subject 1


@pytest.mark.parametrize("first_row", [True, False])
def test_unquoted_thousands_separator_is_named_with_its_row_and_cause(tmp_path, pk1, first_row):
    """Issue 12: an unquoted 1,000 on the first data row made pandas take the first column
    as the index, shifting every column: 88 problems, none naming the cause."""
    rows = ["1,0,1,100,1,", *[f"1,{t},0,0,2,{t / 10}" for t in range(1, 40)], "2,0,1,50,1,", *[f"2,{t},0,0,2,1" for t in range(1, 40)]]
    k = 0 if first_row else 40
    rows[k] = rows[k].replace(",100,", ",1,000,").replace(",50,", ",1,000,")
    with pytest.raises(DataFormatError) as err:
        read_nonmem_csv(write(tmp_path, "ID,TIME,EVID,AMT,CMT,DV\n" + "\n".join(rows) + "\n")).subject_records(pk1)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"row {k + 1} (line {k + 2}) has 7 fields but the header has 6 columns" in msg
    assert "'1,000' (fields 4-5) is the number 1000 written with a thousands separator" in msg


def test_rows_with_too_few_fields_or_another_separator_are_refused(tmp_path):
    with pytest.raises(DataFormatError, match=r"row 2 \(line 3\) has 5 fields but the header has 6 columns"):
        read_nonmem_csv(write(tmp_path, "ID,TIME,EVID,AMT,CMT,DV\n1,0,1,100,1,\n1,1,0,0,2\n"))
    with pytest.raises(DataFormatError, match=r"row 1 \(line 2\) has 1 field .* it looks ';'-separated"):
        read_nonmem_csv(write(tmp_path, "ID,TIME,EVID,AMT,CMT,DV\n1;0;1;100;1;\n"))
    with pytest.raises(DataFormatError, match=r"the header 'ID;TIME;AMT' is one column: the file looks ';'-separated"):
        read_nonmem_csv(write(tmp_path, "ID;TIME;AMT\n1;0;100\n"))


def test_quoted_thousands_separator_gets_a_hint(tmp_path, pk1):
    data = read_nonmem_csv(write(tmp_path, 'ID,TIME,EVID,AMT,CMT\n1,0,1,"1,000",1\n'))
    assert data.problems(pk1) == ["row 1 (subject 1): column `AMT` must be numeric, got '1,000' (a thousands separator? write 1000)"]


@pytest.mark.parametrize(("column", "value", "shown"), [
    ("AMT", "1e300", "1e+300"), ("AMT", "inf", "inf"), ("AMT", "-inf", "-inf"), ("TIME", "1e300", "1e+300"), ("TIME", "inf", "inf"),
    ("RATE", "inf", "inf"), ("II", "inf", "inf"), ("DV", "1e200", "1e+200"), ("DV", "-inf", "-inf"), ("CMT", "inf", "inf"),
    ("EVID", "inf", "inf"), ("ADDL", "1e150", "1e+150"), ("MDV", "inf", "inf"), ("DVID", "inf", "inf"),
])
def test_non_finite_or_huge_values_are_refused_naming_the_row(tmp_path, pk1, column, value, shown):
    """Issue 12: AMT 1e300 ran and returned 1.9e298; AMT inf failed deep in the solver without
    naming the row. Every numeric column il2pkpd reads must be finite and at most 1e100."""
    cols = ["ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "DV", "MDV", "DVID"]
    rows = [["1", "0", "1", "100", "1", "0", "0", "0", "", "1", "0"], ["1", "1", "0", "0", "2", "0", "0", "0", "3", "0", "1"]]
    rows[1 if column in ("TIME", "DV") else 0][cols.index(column)] = value
    text = ",".join(cols) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    row = 2 if column in ("TIME", "DV") else 1
    with pytest.raises(DataFormatError) as err:
        read_nonmem_csv(write(tmp_path, text)).subject_records(pk1)
    first = str(err.value).split("\n")[1 if "problems in the dataset" in str(err.value) else 0]
    assert f"row {row} (subject 1): column `{column}` must be " in first and shown in first


def test_amt_inf_is_refused_before_the_solver(tmp_path, pk1):
    from il2pkpd.prediction import predict

    with pytest.raises(DataFormatError, match=r"row 1 \(subject 1\): column `AMT` must be finite, got inf"):
        predict(pk1, read_nonmem_csv(write(tmp_path, "ID,TIME,EVID,AMT,CMT,DV\n1,0,1,inf,1,\n1,1,0,0,2,3\n")))


def test_addl_beyond_the_documented_limit_is_refused(tmp_path, pk1):
    from il2pkpd.dosing import MAX_ADDL

    with pytest.raises(DataFormatError, match=rf"`ADDL` must be an integer from 0 to {MAX_ADDL:,} .*got 1000000000000.0"):
        records(tmp_path, "ID,TIME,EVID,AMT,CMT,II,ADDL\n1,0,1,100,1,1,1e12\n1,1,0,0,2,,\n", pk1)


def test_a_dot_in_time_is_a_missing_time_not_time_zero(tmp_path, pk1):
    """Found by the fuzzer: TIME '.' (NONMEM's missing value) was read as 0."""
    with pytest.raises(DataFormatError, match=r"row 2 \(subject 1\): `TIME` is missing"):
        records(tmp_path, "ID,TIME,EVID,AMT,CMT,DV\n1,0,1,100,1,\n1,.,0,0,2,3\n", pk1)


def test_nul_bytes_duplicate_columns_and_bad_mdv_are_refused(tmp_path, pk1):
    """Found by the fuzzer: a NUL byte in the header made `CMT` an unknown column, so every
    record silently went to CMT 1; a duplicated AMT column kept the first one silently."""
    p = tmp_path / "nul.csv"
    p.write_bytes(b"ID,TIME,EVID,AMT,\x00CMT\n1,0,1,100,1\n")
    with pytest.raises(DataFormatError, match=r"line 1 contains a NUL byte"):
        read_nonmem_csv(p)
    with pytest.raises(DataFormatError, match=r"column 'AMT' appears twice in the header \(fields 3 and 4\)"):
        read_nonmem_csv(write(tmp_path, "ID,TIME,AMT,AMT,CMT\n1,0,100,5,1\n"))
    with pytest.raises(DataFormatError, match=r"row 2 \(subject 1\): `MDV` must be 0 or 1, got 5.0"):
        records(tmp_path, "ID,TIME,EVID,AMT,CMT,DV,MDV\n1,0,1,100,1,,1\n1,1,0,0,2,3,5\n", pk1)


def test_bom_crlf_blank_lines_and_blanks_around_values_read_the_same(tmp_path, pk1):
    plain = records(tmp_path, GOOD, pk1)
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n\r\n").replace(",", " , ").encode())
    other = read_nonmem_csv(p).subject_records(pk1)
    assert [(s.subject, [repr(r) for r in s]) for s in other] == [(s.subject, [repr(r) for r in s]) for s in plain]  # repr: nan == nan


def test_parameter_columns_are_checked_with_their_row(tmp_path, pk1):
    """A CL column of -1 or inf was reported without its row (or with a RuntimeWarning from
    inf - inf); now each names the row, the subject and the bounds."""
    with pytest.raises(DataFormatError, match=r"row 1 \(subject 1\): column `CL` \(parameter `cl`\) must lie within \[0, inf\] L/h, got -1.0"):
        read_nonmem_csv(write(tmp_path, "ID,TIME,EVID,AMT,CMT,CL\n1,0,1,100,1,-1\n1,1,0,0,2,-1\n")).subject_values(pk1)
    with pytest.raises(DataFormatError, match=r"row 1 \(subject 1\): column `CL` must be finite, got inf"):
        read_nonmem_csv(write(tmp_path, "ID,TIME,EVID,AMT,CMT,CL\n1,0,1,100,1,inf\n1,1,0,0,2,inf\n")).subject_values(pk1)


def test_consequences_of_a_reported_value_are_not_reported_again(tmp_path, pk1):
    data = read_nonmem_csv(write(tmp_path, "ID,TIME,EVID,AMT,CMT\n1,0,1,100,1e-300\n1,1,0,0,1.5e200\n"))
    assert data.problems(pk1) == [
        "row 2 (subject 1): column `CMT` must be at most 1e+100 in magnitude (no physical quantity comes near it; float64 arithmetic on it overflows), got 1.5e+200",
        "row 1 (subject 1): column `CMT` must hold integers, got 1e-300",
    ]
    no_amt = read_nonmem_csv(write(tmp_path, "ID,TIME,EVID,CMT\n1,0,1,1\n1,1,1,1\n1,2,0,2\n"))
    assert no_amt.problems(pk1) == ["row 1 (subject 1): `EVID` marks 2 row(s) as doses (the first on row 1) but the dataset has no `AMT` column"]


def test_an_unknown_dvid_on_a_non_observation_row_is_named_before_predicting(tmp_path, pk1):
    """Found by the 20,000-case fuzz run: DVID 5 on an EVID 2 row passed the checks, then
    predict() (which gives PRED on every row, for the output its DVID maps to) failed with a
    ModelSpecError naming neither row nor subject."""
    from il2pkpd.prediction import predict

    data = read_nonmem_csv(write(tmp_path, "ID,TIME,EVID,AMT,CMT,DV,DVID\n1,0,1,100,1,,0\n1,1,2,0,2,,5\n1,2,0,0,2,3,1\n"))
    with pytest.raises(DataFormatError, match=r"row 2 \(subject 1\): `DVID` must be one of \[1\] for model 'pk1_oral', got 5"):
        predict(pk1, data)
