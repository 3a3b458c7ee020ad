"""The regimen language and Regimen -> NONMEM records."""

from __future__ import annotations

import numpy as np
import pytest

import il2pkpd
from il2pkpd import RegimenError
from il2pkpd.dosing import parse_regimen


def test_ivory_regimen_gives_twelve_doses_on_the_inferred_days(ivory):
    recs = parse_regimen("1.5 MIU sc qd x5 then 1.5 MIU sc qw x7").to_records(ivory)
    assert [r.time for r in recs] == [0, 1, 2, 3, 4, 11, 18, 25, 32, 39, 46, 53]  # BRIEF 1.2 (days 1-5, 12..54)
    assert all(r.amt == 1.5 and r.cmt == 1 and r.rate == 0 for r in recs)  # depot in MIU
    assert sum(r.amt for r in recs) == pytest.approx(18.0)  # 18 MIU cumulative (BRIEF 1.2)


def test_per_m2_doses_scale_with_body_surface_area(ivory):
    recs = parse_regimen("0.26 MIU/m2 sc q3d x20").to_records(ivory, covariates={"bsa": 1.5})
    assert len(recs) == 20 and recs[1].time == 3.0
    assert recs[0].amt == pytest.approx(0.26 * 1.5)


def test_mass_units_convert_through_the_drug(ivory):
    rec = parse_regimen("61.1 ug sc once").to_records(ivory)[0]
    assert rec.amt == pytest.approx(61.1e-3 * 18 / 1.1, rel=1e-12)  # MIU


def test_infusion_and_hourly_interval_in_an_hourly_model(pk1):
    recs = parse_regimen("100 mg iv over 2h q12h x3").to_records(pk1)
    assert [r.time for r in recs] == [0, 12, 24]
    assert recs[0].cmt == 2 and recs[0].rate == pytest.approx(50.0)


def test_explicit_start_time(pk1):
    recs = parse_regimen("10 mg po at 2d").to_records(pk1)
    assert recs[0].time == 48.0


def test_regimens_compose_with_plus():
    r = parse_regimen("1 MIU sc qd x2") + parse_regimen("2 MIU sc qw x2")
    assert r.dose_times("d") == [0, 1, 8, 15]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("-1.5 MIU sc qd x5", "-1.5"),
        ("0 MIU sc once", "0.0"),
        ("1.5 parsecs sc qd x5", "parsecs"),
        ("1.5 MIU sc q0d x5", "interval"),
        ("1.5 MIU sc qd x5 then banana", "banana"),
        ("1.5 MIU subcut qd", "subcut"),
        ("1.5 MIU sc x5", "no frequency"),
        ("", "non-empty"),
        ("1.5 L sc once", "not an amount"),
    ],
)
def test_bad_regimens_raise_with_the_offending_text(text, fragment):
    with pytest.raises(RegimenError, match=fragment.replace("(", r"\(")):
        parse_regimen(text)


def test_per_m2_dose_without_bsa_covariate_is_refused(pk1):
    with pytest.raises(RegimenError, match="bsa"):
        parse_regimen("1 mg/m2 po once").to_records(pk1)


def test_iv_needs_a_central_compartment():
    model = il2pkpd.build_model({
        "model": {"name": "m", "time_unit": "h"},
        "parameters": {"k": {"value": 1.0, "unit": "1/h"}},
        "states": {"gut": {"unit": "mg", "dose": True}},
        "odes": {"gut": "-k*gut"},
    })
    with pytest.raises(RegimenError, match="central"):
        parse_regimen("1 mg iv once").to_records(model)


def test_regimen_round_trips_through_event_records(ivory, pk1):
    from il2pkpd.dosing import regimen_from_records

    for model, text in [(ivory, "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"), (pk1, "100 mg iv over 2h q12h x3 then 50 mg po q24h x2")]:
        recs = parse_regimen(text).to_records(model)
        back = regimen_from_records(recs, model)
        again = parse_regimen(str(back)).to_records(model)  # the text form reads back too
        got = np.array([(r.time, r.amt, r.cmt, r.rate) for r in again])
        np.testing.assert_allclose(got, np.array([(r.time, r.amt, r.cmt, r.rate) for r in recs]), rtol=1e-11)
    assert str(regimen_from_records(parse_regimen("1.5 MIU sc qd x5 then 1.5 MIU sc qw x7").to_records(ivory), ivory)) == (
        "1.5 MIU sc q1day x5 at 0day then 1.5 MIU sc q7day x7 at 11day"
    )


def test_addl_records_expand_into_a_block(pk1):
    from il2pkpd.dosing import Record, regimen_from_records

    reg = regimen_from_records([Record(0.0, 1, 100.0, 1, ii=12.0, addl=3, row=0)], pk1)
    assert len(reg.blocks) == 1 and reg.blocks[0].count == 4 and reg.dose_times("h") == [0, 12, 24, 36]


def test_steady_state_records_cannot_become_a_regimen(pk1):
    from il2pkpd.dosing import Record, regimen_from_records

    with pytest.raises(RegimenError, match="row 1"):
        regimen_from_records([Record(0.0, 1, 100.0, 1, ii=12.0, ss=1, row=0)], pk1)


def test_outputs_merge_after_a_dose_at_their_time_or_before_it_as_a_pre_dose_sample():
    from il2pkpd.dosing import Record, Records

    doses = Records([Record(time=0.0, evid=1, amt=1.0, cmt=1, row=7), Record(time=24.0, evid=1, amt=2.0, cmt=1, row=8)], subject="s1")
    after = doses.with_outputs([24.0, 0.0, 12.0])
    assert [(r.time, r.evid) for r in after] == [(0.0, 1), (0.0, 2), (12.0, 2), (24.0, 1), (24.0, 2)]
    assert [r.row for r in after] == [0, 1, 2, 3, 4] and after.subject == "s1"
    before = doses.with_outputs([0.0, 24.0], pre_dose=True)
    assert [(r.time, r.evid) for r in before] == [(0.0, 2), (0.0, 1), (24.0, 2), (24.0, 1)]
