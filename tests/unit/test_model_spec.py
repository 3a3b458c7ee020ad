"""Model files: every malformed spec is a ModelSpecError naming file, key, line, symbol."""

from __future__ import annotations

import copy
import textwrap

import pytest

import il2pkpd
from il2pkpd import ModelSpecError

BASE = {
    "model": {"name": "one", "time_unit": "h"},
    "parameters": {
        "ka": {"value": 1.0, "unit": "1/h"},
        "cl": {"value": 2.0, "unit": "L/h"},
        "v": {"value": 10.0, "unit": "L"},
    },
    "states": {"depot": {"unit": "mg", "dose": True}, "central": {"unit": "mg", "dose": True}},
    "odes": {"depot": "-ka*depot", "central": "ka*depot - cl/v*central"},
    "outputs": {"cp": {"expr": "central/v", "unit": "mg/L"}},
}


def build(**changes):
    spec = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = spec
        keys = path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return il2pkpd.build_model(spec)


def test_valid_spec_builds_and_is_immutable():
    m = build()
    assert m.state_names == ("depot", "central")
    with pytest.raises(AttributeError):
        m.name = "other"
    m2 = m.with_values(ka=3.0)
    assert m2.typical_values["ka"] == 3.0 and m.typical_values["ka"] == 1.0


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"odes__central": "ka*depot - cl/vv*central"}, r"`odes.central`.*undeclared symbol `vv`"),
        ({"odes__central": "ka*depot - cl/v*central +"}, r"`odes.central`.*syntax error"),
        ({"odes__central": "ka*depot - cl*central"}, r"`odes.central`.*unit clash"),
        ({"odes__central": "ka*depot - cl/v*central + 1"}, r"unit clash.*added or subtracted"),
        ({"odes__central": "ka*depot - __import__('os')"}, r"not allowed|undeclared"),
        ({"odes__central": "ka*depot - eval(v)"}, r"function `eval` is not allowed"),
        ({"outputs__cp__expr": "exp(central)"}, r"argument of `exp` must be dimensionless"),
        ({"outputs__cp__unit": "mg/h"}, r"`outputs.cp`.*unit clash"),
        ({"outputs__ka": {"expr": "1", "unit": "1"}}, r"duplicate name `ka`"),
        ({"parameters__ka__unit": "furlong"}, r"`parameters.ka`.*unknown unit 'furlong'"),
        ({"parameters__ka__value": -1.0, "parameters__ka__lower": 0.0}, r"`parameters.ka`.*-1.0"),
        ({"parameters__t": {"value": 1.0, "unit": "h"}}, r"`t` is reserved"),
        ({"odes__central": "ka*depot - cl/v*central", "odes__gut": "0"}, r"`odes.gut`.*not a declared state"),
        ({"model__time_unit": "mg"}, r"time_unit.*must be a unit of time"),
        ({"parameters__ka__prior": {"dist": "cauchy", "x": 1}}, r"prior.dist.*'cauchy'"),
        ({"parameters__ka__iiv": {"kind": "lognormal", "omega": -0.1}}, r"omega.*-0.1"),
        ({"states__depot__cmt": 2}, r"`cmt` 2 is already used"),
        ({"states__depot__lag": "cl"}, r"unit clash.*lag time"),
        ({"states__central__initial": "central"}, r"may depend only on parameters"),
        ({"outputs__a": {"expr": "b", "unit": "1"}, "outputs__b": {"expr": "a", "unit": "1"}}, r"cycle: a -> b -> a|cycle: b -> a -> b"),
        ({"parameters__ka__source": "Wikipedia"}, r"BRIEF source ids"),
        ({"parameters__ka__label": "CL"}, r"label.*another parameter"),
    ],
)
def test_invalid_specs_raise_model_spec_error(changes, pattern):
    with pytest.raises(ModelSpecError, match=pattern):
        build(**changes)


def test_missing_ode_names_the_state():
    spec = copy.deepcopy(BASE)
    del spec["odes"]["central"]
    with pytest.raises(ModelSpecError, match="missing ODE for state `central`"):
        il2pkpd.build_model(spec)


def test_errors_from_a_file_name_the_file_and_line(tmp_path):
    text = textwrap.dedent("""
        [model]
        name = "bad"
        time_unit = "h"

        [parameters.k]
        value = 1.0
        unit = "1/h"

        [states.a]
        unit = "mg"

        [odes]
        a = "-k*a*q"
    """)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ModelSpecError) as err:
        il2pkpd.load_model(path)
    msg = str(err.value)
    assert "bad.toml" in msg and "`odes.a` (line 14)" in msg and "`q`" in msg


def test_unit_conversion_is_folded_into_the_code():
    # ka in 1/h in a model whose clock is in days: 24x faster per day
    spec = copy.deepcopy(BASE)
    spec["model"]["time_unit"] = "day"
    spec["outputs"]["cp"]["unit"] = "ng/mL"
    m = il2pkpd.build_model(spec)
    assert str(m.symbolic.rhs[0]) == "-24.0*depot*ka"
    central, v = m.symbolic.state_symbols[1], m.symbolic.parameter_symbols[2]
    assert float((m.symbolic.outputs[0] / (central / v)).simplify()) == pytest.approx(1000.0, rel=1e-12)


def test_hill_terms_with_parameter_exponents_pass_the_dimension_check(ivory):
    assert "signal" in ivory.output_names


def test_unknown_model_name_lists_the_available_ones():
    with pytest.raises(ModelSpecError, match="ivory"):
        il2pkpd.load_model("no_such_model")


def test_invalid_toml_is_reported(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[model\nname=")
    with pytest.raises(ModelSpecError, match="not valid TOML"):
        il2pkpd.load_model(p)


# -- issue 12, item 7 and the fuzz suite's findings ------------------------------------------


@pytest.mark.parametrize(
    ("expr", "pattern"),
    [
        ("ka*depot - cl/v*central*exp(1000)", r"`exp\(1000\)` .* 64-bit float range .* got about 1.97e\+434"),
        ("ka*depot - cl/v*central/0", r"must not contain an infinite or undefined constant"),
        ("ka*depot - cl/v*central*log(0)", r"`log\(0\)` .* is not finite"),
        ("ka*depot - cl/v*central*sqrt(-1)", r"`sqrt\(-1\)` .* is not a real number"),
        ("ka*depot - cl/v*central + 1e308*ka*depot + 1e308*ka*depot", r"unit clash|outside the 64-bit float range"),
        ("ka*depot - cl/v*central*(1e308 + 1e308)", r"64-bit float range"),
        ("ka*depot - (cl > 1)*central", r"`cl > 1` is a condition where a number is needed"),
        ("ka*depot - if_else(cl, 1, 2)*cl/v*central", r"`cl` must be a condition"),
        ("ka*depot - cl/v*central*exp(cl > 1)", r"`cl > 1` is a condition where a number is needed"),
        ("ka*depot - min(cl > 1, 2)*cl/v*central", r"is a condition where a number is needed"),
        ("ka*depot - cl/v*central if cl else 0", r"is not allowed in a model expression"),
    ],
)
def test_constant_and_condition_misuse_is_a_one_line_model_spec_error(expr, pattern):
    """Conditions used as numbers crashed with sympy's TypeError/ValueError; constants outside
    float64 (exp(1000), 1/0, log(0), sqrt(-1)) loaded and gave inf/NaN at run time."""
    with pytest.raises(ModelSpecError, match=pattern) as err:
        build(odes__central=expr)
    assert "\n" not in str(err.value) and "`odes.central`" in str(err.value)


@pytest.mark.parametrize("unit", ["mg/0", "kg^1e10", "1e400 mg", "0 mg", "nested"])
def test_unit_arithmetic_failures_name_the_key(unit):
    """Found by the fuzzer: units.parse_unit raised ZeroDivisionError/OverflowError/
    RecursionError, or gave an infinite or zero scale, through build_model."""
    import sys

    if unit == "nested":  # deeper than the recursion limit (which some libraries raise)
        unit = "(" * (sys.getrecursionlimit() + 100) + "L" + ")" * (sys.getrecursionlimit() + 100)
    with pytest.raises(ModelSpecError, match=r"`parameters.v`") as err:
        build(parameters__v__unit=unit)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


@pytest.mark.parametrize("section", ["constants", "covariates"])
def test_non_finite_constant_or_covariate_values_are_refused(section):
    """Found by the fuzzer: a constant `value = nan` loaded, and every output was NaN."""
    spec = copy.deepcopy(BASE)
    spec[section] = {"wref": {"value": float("nan"), "unit": "kg"}}
    with pytest.raises(ModelSpecError, match=rf"`{section}.wref`: `value` must be finite, got nan"):
        il2pkpd.build_model(spec)


def test_a_key_that_is_not_a_name_is_shown_on_one_line():
    spec = copy.deepcopy(BASE)
    spec["parameters"]["a\nb"] = {"value": 1.0, "unit": "1"}
    with pytest.raises(ModelSpecError) as err:
        il2pkpd.build_model(spec)
    assert str(err.value) == "`parameters.'a\\nb'`: 'a\\nb' is not a valid name (letters, digits, _; not starting with a digit)"


def test_model_files_with_a_bom_load_and_broken_files_are_model_spec_errors(tmp_path):
    text = (il2pkpd.io.model_file.model_search_path()[0] / "pk1_oral.toml").read_text()
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert il2pkpd.load_model(bom).name == "pk1_oral"
    nested = tmp_path / "nested.toml"
    nested.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n" + text)
    with pytest.raises(ModelSpecError, match="nested too deeply"):
        il2pkpd.load_model(nested)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(text.replace("Volume", "Volum\xe9").encode("latin-1"))
    with pytest.raises(ModelSpecError, match="must be UTF-8 text"):
        il2pkpd.load_model(latin)


def test_the_parser_builds_the_same_expressions_as_before():
    """Runs of + and * are now built at once (no recursion): the sympy expression is the
    one the operator-by-operator construction gave."""
    import sympy as sp

    from il2pkpd.model._expr import parse_expression

    a, b, c, d = sp.symbols("a b c d", real=True)
    syms = {"a": a, "b": b, "c": c, "d": d}
    for text, expected in [("a + b - c*d/a", a + b - c * d / a), ("a/b/c*d", a / b / c * d), ("-a - -b + 2^c^d", -a + b + 2 ** c ** d),
                           ("a*(b + c)/(d - 1) - 0.5*a", a * (b + c) / (d - 1) - sp.Float(0.5) * a), ("(a+b)^2/3", (a + b) ** 2 / 3)]:
        assert parse_expression(text, syms) == expected, text
