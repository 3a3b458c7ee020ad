"""Regimens and event records: non-physical magnitudes are refused with the value (issue 12, item 6).

The rule is the dataset's (``il2pkpd.dosing._records``): amounts, rates, times and
intervals finite and at most 1e100 in magnitude, at most 100,000 additional doses.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from il2pkpd.dosing import Record, Records, parse_regimen, records_from_columns
from il2pkpd.dosing import MAX_ADDL, MAX_MAGNITUDE
from il2pkpd.errors import RegimenError


@pytest.mark.parametrize(("text", "pattern"), [
    ("1e300 mg po q24h x3", r"`amount` must be finite and at most 1e\+100, got 1e\+300 mg in regimen '1e300 mg po q24h x3'"),
    ("100 mg po q24h x1000000000", r"`count` must be an integer from 1 to 100,001, got 1000000000"),
    ("1 mg iv over 1e200h", r"`duration` must be finite and at most 1e\+100, got 1e\+200"),
])
def test_regimen_strings_with_non_physical_magnitudes_are_refused(text, pattern):
    with pytest.raises(RegimenError, match=pattern):
        parse_regimen(text)


@pytest.mark.parametrize(("field", "value"), [("amt", np.inf), ("amt", 1e300), ("rate", np.inf), ("ii", 1e101), ("time", -np.inf), ("dv", np.inf)])
def test_records_refuse_non_finite_and_huge_values(field, value):
    base = {"time": 0.0, "evid": 1, "amt": 100.0, "cmt": 1}
    rec = Record(**{**base, field: value, "row": 4})
    with pytest.raises(RegimenError, match=rf"`{field.upper()}` must be .* got {re.escape(repr(value))} \(subject 7 row 5\)"):
        Records([rec], subject=7).validate([1])


def test_addl_beyond_the_limit_is_refused_before_any_event_is_built():
    with pytest.raises(RegimenError, match=f"`ADDL` must be an integer from 0 to {MAX_ADDL:,}"):
        Records([Record(0.0, 1, 100.0, 1, ii=1.0, addl=MAX_ADDL + 1, row=0)], subject=1).validate([1])
    assert MAX_MAGNITUDE == 1e100


def test_records_from_columns_names_the_row_of_a_non_integer_code():
    """An infinite CMT used to end in Python's `OverflowError: cannot convert float infinity to integer`."""
    cols = {"time": np.array([0.0, 1.0]), "evid": np.array([1.0, 0.0]), "amt": np.array([100.0, 0.0]), "cmt": np.array([1.0, np.inf])}
    with pytest.raises(RegimenError, match=r"`CMT` must be an integer, got inf \(subject 3 row 2\)"):
        records_from_columns(cols, subject=3)
