"""Malformed tables thrown at the dataset reader give DataFormatError, never another exception."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from il2pkpd import DataFormatError
from il2pkpd.io.nonmem import read_nonmem_csv

COLUMNS = ["ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "SS", "DV", "MDV", "DVID", "CL", "F1", "time", "Amt"]
cell = st.one_of(
    st.integers(-3, 5).map(str),
    st.floats(-1e3, 1e3, allow_nan=False).map(lambda x: f"{x:.3g}"),
    st.sampled_from(["", ".", "nan", "inf", "-inf", "x", "1e400", " 2 ", "1,5", "NA", "-1", "-2", "0.5"]),
)


@st.composite
def tables(draw):
    cols = draw(st.lists(st.sampled_from(COLUMNS), min_size=0, max_size=9, unique=True))
    if draw(st.integers(0, 4)) > 0:  # 80%: reach past the ID/TIME check
        cols = ["ID", "TIME"] + [c for c in cols if c not in ("ID", "TIME")]
    nrows = draw(st.integers(0, 8))
    rows = [[draw(cell) for _ in cols] for _ in range(nrows)]
    return cols, rows


@settings(max_examples=200)
@given(tables())
def test_reader_raises_only_data_format_error(tmp_path_factory, pk1, table):
    cols, rows = table
    text = ",".join(cols) + "\n" + "".join(",".join(f'"{v}"' for v in r) + "\n" for r in rows)
    path = tmp_path_factory.mktemp("fuzz") / "d.csv"
    path.write_text(text)
    try:
        data = read_nonmem_csv(path)
        data.problems(pk1, require_dv=True)
        data.subject_records(pk1)
        data.subject_values(pk1)
        event("valid table: records built")
    except DataFormatError:
        event("DataFormatError")


def test_fuzz_strategy_reaches_valid_tables(pk1, tmp_path):
    # the strategy above must also produce readable tables, or the fuzz test proves little
    path = tmp_path / "ok.csv"
    path.write_text('ID,TIME,EVID,AMT,CMT\n"1","0","1","5","1"\n"1","1","0","0","2"\n')
    assert len(read_nonmem_csv(path).subject_records(pk1)) == 1
