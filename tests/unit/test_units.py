"""Units: parsing, conversions, drug conversions (BRIEF S28), BSA formulas."""

from __future__ import annotations

import math

import pytest

from il2pkpd.units import ALDESLEUKIN, UnitError, bsa_dubois, bsa_mosteller, conversion_factor, convert_amount, parse_unit


@pytest.mark.parametrize(
    ("a", "b", "factor"),
    [("h", "day", 1 / 24), ("1/h", "1/day", 24.0), ("L/h", "mL/min", 1000 / 60), ("pM", "nmol/L", 1e-3),
     ("mg/L", "ng/mL", 1000.0), ("%", "1", 0.01), ("ug", "mg", 1e-3), ("MIU", "IU", 1e6), ("m2", "cm2", 1e4),
     ("week", "d", 7.0), ("pM", "M", 1e-12), ("IU/mL", "MIU/L", 1e-3), ("h^-1", "1/h", 1.0), ("L", "dm^3", 1.0)],
)
def test_conversion_factors_are_exact_definitions(a, b, factor):
    assert conversion_factor(a, b) == pytest.approx(factor, rel=1e-12)


def test_aldesleukin_conversions_follow_the_label():
    # 18 MIU = 1.1 mg and MW 15,300 Da (BRIEF S28): 1 MIU = 61.1 ug = 4.0 nmol (BRIEF 3.1)
    assert convert_amount(18.0, "MIU", "mg", ALDESLEUKIN) == pytest.approx(1.1, rel=1e-12)
    assert convert_amount(1.0, "MIU", "ug", ALDESLEUKIN) == pytest.approx(61.1, rel=1e-3)
    assert convert_amount(1.0, "MIU", "nmol", ALDESLEUKIN) == pytest.approx(3.99, rel=2e-3)
    assert convert_amount(convert_amount(1.5, "MIU", "nmol", ALDESLEUKIN), "nmol", "MIU", ALDESLEUKIN) == pytest.approx(1.5, rel=1e-12)


def test_converting_between_dimensions_needs_a_drug():
    with pytest.raises(UnitError, match="without a drug"):
        convert_amount(1.0, "MIU", "mg")
    with pytest.raises(UnitError, match="dimensions differ"):
        conversion_factor("mg", "L")


@pytest.mark.parametrize("text", ["furlong", "mg//L", "", "mg/(L", "2^x"])
def test_bad_units_raise_with_the_text(text):
    with pytest.raises(UnitError):
        parse_unit(text)


def test_unknown_unit_message_names_it():
    with pytest.raises(UnitError, match="'furlong'"):
        parse_unit("furlong/h")


def test_bsa_formulas_match_their_definitions():
    assert bsa_mosteller(180, 80) == pytest.approx(math.sqrt(180 * 80 / 3600))
    assert bsa_dubois(180, 80) == pytest.approx(0.007184 * 80**0.425 * 180**0.725)
    with pytest.raises(UnitError, match="-1"):
        bsa_mosteller(-1, 80)


@pytest.mark.parametrize("unit", ["mg/0", "kg^1e10", "1e400 mg", "0 mg", "(" * 5000 + "L" + ")" * 5000])
def test_units_whose_arithmetic_fails_are_a_unit_error(unit):
    """parse_unit is public (regimens, CLI --unit): 'mg/0' raised ZeroDivisionError and
    '1e400 mg' gave an infinite scale outside model files."""
    with pytest.raises(UnitError) as err:
        parse_unit(unit)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200
