"""Fuzz suite for model files (seeded generator; a worker process runs :func:`il2pkpd.load_model`).

Every case starts from a valid model file (``models/pk1_oral.toml`` as it stands, or a
PK/PD model written here with constants, a covariate, chained outputs, two observations
and an event hazard), applies 1-2 mutations and loads it:

* expressions: undeclared symbols, disallowed syntax (attributes, subscripts, lambdas,
  strings, keyword and starred arguments, ``==``), huge powers (``10**10**10``,
  ``10^10^10``, ``pow(10, 10**10)``, ``2**2**2**2**2``), constants outside float64 (``1e400``,
  ``exp(1000)``, ``10**-400``), ``1/0``, ``log(0)``, ``sqrt(-1)``, conditions used as numbers
  and numbers as conditions, nesting 101 to 5,000 levels deep (parentheses, unary minus,
  calls, powers), sums of 3,000 terms, 20,000-character expressions, expressions given as
  booleans, arrays or tables; and rewrites that must not change the model (blanks, ``^``
  for ``**``, parentheses, ``+ 0``, ``1*``, a sum of 500 copies divided by 500);
* units: unknown or malformed units, units of another dimension (a unit clash), units of
  the same dimension (accepted);
* structure: missing sections and fields, unknown fields, duplicated keys and tables,
  cyclic and self-referencing outputs, invalid names (keywords, reserved names, names with
  blanks, new lines or non-ASCII letters), bad ``cmt``/``dvid`` (duplicates, 0, 1.5, text),
  non-finite and wrongly typed numbers (TOML ``nan``, ``inf``, strings, booleans, arrays),
  inverted bounds, bad priors and IIV, bad time units;
* the file: truncated, garbage inserted, arrays nested 5,000 deep, a non-UTF-8 byte; a
  byte-order mark, CRLF line ends and comments (which must not change the model).

Each case must end in a :class:`~il2pkpd.errors.ModelSpecError` (or another
:class:`~il2pkpd.errors.Il2pkpdError`) whose message is one line of at most 1,000
characters naming the key (and, for a TOML syntax error, the line), or in a model: for a
rewrite that must not change it, every right-hand side, output and initial value equal to
the unmutated model's at a test point (the reference computation); never another
exception, a hang (a time limit per case), a case slower than 10 s, or the acceptance of a
model that the mutation made invalid.

Budget: 300 cases by default (about 5 s); ``IL2PKPD_FUZZ_CASES`` for more (see
``test_dataset_fuzz.py`` and ``tests/property/README.md``).
"""

from __future__ import annotations

import copy
import json
import math
import random
import re

import pytest

from _fuzz import ROOT, Tally, budget, seed

PKPD = {
    "model": {"name": "fuzzpd", "time_unit": "h", "description": "PK/PD test model for the fuzzer"},
    "parameters": {
        "ka": {"value": 1.0, "unit": "1/h", "lower": 0.0, "label": "KA", "prior": {"dist": "lognormal", "median": 1.0, "sigma": 1.0},
               "iiv": {"kind": "lognormal", "omega": 0.3}},
        "cl": {"value": 2.0, "unit": "L/h", "lower": 0.0, "label": "CL"},
        "v": {"value": 20.0, "unit": "L", "lower": 0.0, "upper": 1000.0, "label": "V"},
        "ec50": {"value": 0.5, "unit": "mg/L", "lower": 0.0},
        "emax": {"value": 0.8, "unit": "1", "lower": 0.0, "upper": 1.0, "iiv": {"kind": "logit", "omega": 0.1}},
        "hill": {"value": 1.5, "unit": "1"},
        "kout": {"value": 0.1, "unit": "1/h", "lower": 0.0},
        "lam": {"value": 0.001, "unit": "1/h", "lower": 0.0},
    },
    "constants": {"scale": {"value": 1000.0, "unit": "ug/mg"}, "wref": {"value": 70.0, "unit": "kg"}},
    "covariates": {"wt": {"value": 70.0, "unit": "kg", "label": "WT"}},
    "states": {
        "depot": {"unit": "mg", "dose": True, "cmt": 1},
        "central": {"unit": "mg", "dose": True, "cmt": 2, "lag": "0"},
        "resp": {"unit": "1", "initial": "1"},
    },
    "odes": {
        "depot": "-ka*depot",
        "central": "ka*depot - cl*(wt/wref)^0.75/v*central",
        "resp": "kout*(1 - emax*conc^hill/(ec50^hill + conc^hill)) - kout*resp",
    },
    "outputs": {
        "conc": {"expr": "central/v", "unit": "mg/L"},
        "conc_ug": {"expr": "conc*scale", "unit": "ug/L"},
        "effect": {"expr": "1 - resp", "unit": "1"},
    },
    "observations": {
        "cp": {"output": "conc", "dvid": 1, "error": {"model": "proportional", "prop": 0.1}},
        "resp": {"output": "effect", "dvid": 2, "error": {"model": "additive", "add": 0.05}},
    },
    "events": {"ae": {"hazard": "lam*exp(2*effect)"}},
}

BAD_EXPRESSIONS = [
    "foo*depot", "ka*depot + undefined_thing", "10**10**10", "10^10^10", "pow(10, 10**10)", "2**2**2**2**2", "1e400*ka",
    "exp(1000)*ka", "10**-400*ka", "1/0*ka", "ka/0", "log(0)*ka", "sqrt(-1)*ka", "(-8)**(1/3)*ka", "(ka > 0)*ka", "exp(ka > 1)",
    "if_else(ka, 1, 2)*ka", "ka and v", "ka == 1", "depot.real", "depot[0]", "lambda: 1", "'text'", "__import__('os')",
    "exp(*ka)", "max(ka)", "min()", "if_else(t > 1, ka)", "exp(x=1)", "ka*depot +", "ka**", "", "   ", "ka·depot", "1 if ka else 2",
    "[ka]", "{ka}", "ka; v", "not ka", "ka @ v", "ka % v", "ka // v", "~ka", "ka << 1",
]
DEEP = [101, 150, 300, 1000, 3000, 5000]


def deep_expression(rng: random.Random, n: int) -> tuple[str, str]:
    """An expression nested ``n`` levels (or a sum of 3n terms), and what loading it must
    give: parentheses add no level (Python keeps no node for them; its tokenizer stops at
    200) and a run of + is one level, so those stay valid while short enough."""
    kind = rng.choice(["paren", "neg", "exp", "pow", "sum"])
    if kind == "paren":
        return "(" * n + "ka" + ")" * n, "unknown" if n < 200 else "invalid"
    if kind == "neg":
        return "-" * n + "ka", "invalid"
    if kind == "exp":
        return "exp(" * n + "ka" + ")" * n, "invalid"
    if kind == "pow":
        return "^".join(["ka"] * n), "invalid"
    text = "+".join(["ka"] * (3 * n))
    return text, "unknown" if len(text) <= 10_000 else "invalid"


BAD_UNITS = ["furlong", "mg/", "", "L/h/", "1/", "mg^x", "10^999 mg", "kg^1e10", "mg**2", "(", "mg mg", "h^-0.5x", "m2^1e400",
             "µg", "1/0", "mg/0", "%%", "nan", "inf", "mg^99999999999999", "L^(1/3)", "mg/L/L/L/L/L/L/L/L/L/L/L/L/L/L/L/L/L/L/L/L"]
DIMENSION = {"L": "volume", "mL": "volume", "kg": "mass", "mg": "mass", "ug": "mass", "mg/L": "conc", "ug/L": "conc", "1/h": "rate",
             "1/day": "rate", "h": "time", "nmol": "substance", "MIU": "activity", "1": "none", "L/h": "flow"}
BAD_NUMBERS = [math.nan, math.inf, -math.inf, "1.0", True, [1.0], {"a": 1}, "", None]
BAD_NAMES = ["1x", "lambda", "t", "exp", "pi", "a b", "a\nb", "é", "", "x" * 300, "a-b", "None", "if"]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else ("-inf" if v == -math.inf else repr(v)))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def to_toml(data: dict) -> str:
    out = []
    for sec, body in data.items():
        if not isinstance(body, dict):
            out.append(f"{toml_key(sec)} = {toml_value(body)}")
            continue
        flat = {k: v for k, v in body.items() if not isinstance(v, dict) or sec in ("model", "odes")}
        sub = {k: v for k, v in body.items() if k not in flat}
        if flat or not sub:
            out.append(f"[{toml_key(sec)}]")
            out += [f"{toml_key(k)} = {toml_value(v)}" for k, v in flat.items()]
        for k, table in sub.items():
            out.append(f"[{toml_key(sec)}.{toml_key(k)}]")
            out += [f"{toml_key(f)} = {toml_value(v)}" for f, v in table.items()]
    return "\n".join(out) + "\n"


def expression_slots(data: dict) -> list[tuple[str, ...]]:
    """Key paths of the expressions in a model mapping."""
    def tables(sec):
        body = data.get(sec, {})
        return body.items() if isinstance(body, dict) else []
    slots = [("odes", k) for k, _ in tables("odes")]
    slots += [(sec, k, f) for sec, f in (("outputs", "expr"), ("events", "hazard"), ("states", "initial"))
              for k, t in tables(sec) if isinstance(t, dict) and f in t]
    return slots


def get_path(data, path):
    for p in path[:-1]:
        data = data[p]
    return data[path[-1]]


def set_path(data, path, value):
    for p in path[:-1]:
        data = data[p]
    data[path[-1]] = value


def preserving_rewrite(rng: random.Random, e: str) -> str:
    kind = rng.choice(["spaces", "caret", "parens", "plus0", "times1", "copies", "double-neg"])
    if kind == "spaces":
        return re.sub(r"([+\-*/^()])", lambda m: f" {m.group(1)} " if rng.random() < 0.5 else m.group(1), e)
    if kind == "caret":
        return e.replace("^", "**") if "^" in e else e.replace("**", "^")
    if kind == "parens":
        k = rng.randint(1, 40)
        return "(" * k + e + ")" * k
    if kind == "plus0":
        return f"({e}) + 0"
    if kind == "times1":
        return f"1*({e})"
    if kind == "copies":  # a long run of + (one nesting level), within the 10,000-character limit
        k = max(2, min(500, 9000 // (len(e) + 5)))
        return "(" + " + ".join([f"({e})"] * k) + f")/{k}"
    return f"-(-({e}))"


def mutate(rng: random.Random) -> tuple[str, bytes, list[dict]]:
    """(base name, file bytes, mutation descriptions)."""
    if rng.random() < 0.3:
        base_name, data = "pk1_oral", None
        text = (ROOT / "models" / "pk1_oral.toml").read_text()
        import tomllib

        data = tomllib.loads(text)
    else:
        base_name, data = "fuzzpd", copy.deepcopy(PKPD)
    infos: list[dict] = []
    text_mut = None
    for _ in range(rng.choice([1, 1, 1, 2])):
        saved, n_infos = copy.deepcopy(data), len(infos)
        try:
            text_mut = _mutate_once(rng, data, infos, text_mut)
        except (KeyError, IndexError, TypeError, AttributeError):  # the section it needs was mutated away: undo
            data.clear()
            data.update(saved)
            del infos[n_infos:]
    return _finish(rng, data, infos, text_mut, base_name)


def _mutate_once(rng: random.Random, data: dict, infos: list[dict], text_mut):
    if True:
        kind = rng.choice(["expr-bad"] * 4 + ["deep"] * 2 + ["expr-preserve"] * 3 + ["long", "expr-type", "unit-bad", "unit-dim", "unit-same", "section-drop",
                           "field-drop", "field-unknown", "cycle", "number-bad", "bounds", "prior-bad", "cmt-bad", "dvid-dup", "name-bad",
                           "time-unit", "text"])
        slots = expression_slots(data)
        if kind in ("expr-bad", "deep", "expr-preserve", "long", "expr-type") and slots:
            path = rng.choice(slots)
            expect = "same" if kind == "expr-preserve" else "invalid"
            if kind == "expr-bad":
                new = rng.choice(BAD_EXPRESSIONS)
            elif kind == "deep":
                new, expect = deep_expression(rng, rng.choice(DEEP))
            elif kind == "long":
                new = "+".join(["ka*0"] * 4000)  # 19,999 characters
            elif kind == "expr-type":
                new = rng.choice([True, [1, 2], {"a": "ka"}, 1.5e400 if False else math.inf])
            else:
                new = preserving_rewrite(rng, str(get_path(data, path)))
            set_path(data, path, new)
            infos.append({"kind": kind, "key": path[1], "expect": expect, "value": str(new)[:80]})
        elif kind in ("unit-bad", "unit-dim", "unit-same"):
            sec = rng.choice(["parameters", "states", "outputs", "covariates", "constants"])
            if not data.get(sec):
                return text_mut
            key = rng.choice(list(data[sec]))
            old = data[sec][key].get("unit", "1")
            if kind == "unit-bad":
                new = rng.choice(BAD_UNITS)
            elif kind == "unit-dim":
                new = rng.choice([u for u, d in DIMENSION.items() if d != DIMENSION.get(old)])
            else:
                new = {"1/h": "1/day", "L": "mL", "mg": "ug", "L/h": "mL/min", "mg/L": "ug/mL", "h": "min", "kg": "g", "1": "%", "ug/mg": "1"}.get(old, old)
            data[sec][key]["unit"] = new
            infos.append({"kind": kind, "key": key, "value": new,
                          "expect": "invalid" if kind == "unit-dim" and old in DIMENSION and sec != "constants" else "unknown"})
        elif kind == "section-drop":
            _undone(infos)
            sec = rng.choice(list(data))
            del data[sec]
            infos.append({"kind": kind, "key": sec, "expect": "invalid" if sec in ("model", "states", "odes") else "unknown"})
        elif kind == "field-drop":
            _undone(infos)
            sec = rng.choice([s for s in data if isinstance(data[s], dict) and data[s]])
            key = rng.choice(list(data[sec]))
            if isinstance(data[sec][key], dict) and data[sec][key]:
                field = rng.choice(list(data[sec][key]))
                del data[sec][key][field]
                need = field in ("value", "unit", "expr", "hazard", "output", "dvid", "error")
                infos.append({"kind": kind, "key": field, "expect": "invalid" if need else "unknown"})
            else:
                del data[sec][key]
                infos.append({"kind": kind, "key": key, "expect": "invalid" if sec in ("model", "odes") and key in ("name", "time_unit") or sec == "odes" else "unknown"})
        elif kind == "field-unknown":
            sec = rng.choice([s for s in data if isinstance(data[s], dict) and data[s] and s != "odes"])
            key = rng.choice(list(data[sec]))
            target = data[sec][key] if isinstance(data[sec][key], dict) else data[sec]
            target["colour"] = "blue"
            infos.append({"kind": kind, "key": "colour", "expect": "invalid"})
        elif kind == "cycle":
            data.setdefault("outputs", {})
            unit = "1"
            if rng.random() < 0.5:
                data["outputs"]["loop_a"] = {"expr": "loop_b + 1", "unit": unit}
                data["outputs"]["loop_b"] = {"expr": "loop_a*2", "unit": unit}
            else:
                data["outputs"]["loop_a"] = {"expr": "loop_a + 1", "unit": unit}
            infos.append({"kind": kind, "key": "loop_a", "expect": "invalid"})
        elif kind == "number-bad":
            sec = rng.choice(["parameters", "constants", "covariates"])
            if not data.get(sec):
                return text_mut
            key = rng.choice(list(data[sec]))
            new = rng.choice(BAD_NUMBERS)
            if new is None:
                del data[sec][key]["value"]
            else:
                data[sec][key]["value"] = new
            infos.append({"kind": kind, "key": key, "expect": "invalid", "value": repr(new)})
        elif kind == "bounds" and data.get("parameters"):
            key = rng.choice(list(data["parameters"]))
            p = data["parameters"][key]
            if rng.random() < 0.5:
                p["lower"], p["upper"] = 10.0, 1.0
            else:
                p["value"] = p.get("upper", 1e300) * 2 if "upper" in p else -1e300 if "lower" in p else math.nan
            infos.append({"kind": kind, "key": key, "expect": "invalid"})
        elif kind == "prior-bad" and data.get("parameters"):
            key = rng.choice(list(data["parameters"]))
            data["parameters"][key][rng.choice(["prior", "iiv"])] = rng.choice([
                {"dist": "lognormal", "median": -1.0, "sigma": 1.0}, {"dist": "cauchy"}, {"dist": "normal", "mean": 0.0}, "wide",
                {"kind": "lognormal", "omega": -0.1}, {"kind": "gamma", "omega": 0.1}, {"dist": "beta", "mean": 2.0, "sd": 0.1},
                {"dist": "uniform", "lower": 1.0, "upper": 0.0}, {"dist": "normal", "mean": 0.0, "sd": math.nan}])
            infos.append({"kind": kind, "key": key, "expect": "invalid"})
        elif kind == "cmt-bad" and data.get("states"):
            key = rng.choice(list(data["states"]))
            others = [s.get("cmt") for k, s in data["states"].items() if k != key and "cmt" in s]
            data["states"][key]["cmt"] = rng.choice([0, -1, 1.5, "1", True] + others[:1])
            infos.append({"kind": kind, "key": key, "expect": "invalid"})
        elif kind == "dvid-dup" and len(data.get("observations", {})) > 1:
            keys = list(data["observations"])
            data["observations"][keys[1]]["dvid"] = data["observations"][keys[0]]["dvid"]
            infos.append({"kind": kind, "key": keys[1], "expect": "invalid"})
        elif kind == "name-bad" and data.get("parameters"):
            old = rng.choice(list(data["parameters"]))
            new = rng.choice(BAD_NAMES)
            data["parameters"] = {(new if k == old else k): v for k, v in data["parameters"].items()}
            infos.append({"kind": kind, "key": new, "old": old, "expect": "invalid"})
        elif kind == "time-unit":
            data["model"]["time_unit"] = rng.choice(["kg", "", "furlong", "1", "L", 5, "h/h"])
            infos.append({"kind": kind, "key": "time_unit", "expect": "invalid"})
        elif kind == "text" and text_mut is None:  # one change of the file's text per case
            text_mut = rng.choice(["truncate", "garbage", "nested", "latin1", "bom", "crlf", "comments", "dup-line", "dup-table"])
            infos.append({"kind": kind, "what": text_mut, "key": None,
                          "expect": "same" if text_mut in ("bom", "crlf", "comments") else ("unknown" if text_mut in ("truncate", "garbage") else "invalid")})
    return text_mut


def _undone(infos: list[dict]) -> None:
    """A section or field dropped after other mutations may take them with it: what they
    made invalid (or kept the same) is no longer known."""
    for i in infos:
        if i["expect"] in ("invalid", "same"):
            i["expect"] = "unknown"


def _finish(rng: random.Random, data: dict, infos: list[dict], text_mut, base_name: str) -> tuple[str, bytes, list[dict]]:
    text = to_toml(data)
    lines = text.split("\n")
    if text_mut == "truncate":
        text = text[: rng.randrange(len(text))]
    elif text_mut == "garbage":
        k = rng.randrange(len(lines))
        lines.insert(k, rng.choice(["= = =", "[", "x = ", "\"unterminated", "[[states]]", "}{", "a.b.c = 1"]))
        text = "\n".join(lines)
    elif text_mut == "nested":
        text = "deep = " + "[" * 5000 + "]" * 5000 + "\n" + text
    elif text_mut == "crlf":
        text = text.replace("\n", "\r\n")
    elif text_mut == "comments":
        text = "\n".join(ln + "  # a comment" if ln.strip() and not ln.startswith("[") and not ln.rstrip().endswith("'''") else ln for ln in lines)
    elif text_mut == "dup-line":
        k = next((i for i, ln in enumerate(lines) if ln.startswith("value =") or ln.startswith("unit =")), 1)
        lines.insert(k + 1, lines[k])
        text = "\n".join(lines)
    elif text_mut == "dup-table":
        k = next((i for i, ln in enumerate(lines) if ln.startswith("[parameters.")), 0)
        lines += [lines[k], "value = 1.0"]
        text = "\n".join(lines)
    raw = text.encode("utf-8")
    if text_mut == "latin1":
        k = rng.randrange(len(raw))
        raw = raw[:k] + b"\xe9" + raw[k:]
    elif text_mut == "bom":
        raw = b"\xef\xbb\xbf" + raw
    return base_name, raw, infos


LOCATION = re.compile(r"`|\bline \d+|TOML|UTF-8|model")


def judge(answer: dict, infos: list[dict], base: dict) -> str | None:
    outcome = answer["outcome"]
    if outcome in ("bug", "died", "hang"):
        return f"{outcome}: {answer.get('type', '')}: {answer.get('message', '')[:300]}"
    if answer.get("elapsed", 0) > 10:
        return f"slow: {answer['elapsed']:.1f} s"
    runtime = [w for w in answer.get("warnings", []) if w.startswith(("RuntimeWarning", "SyntaxWarning", "Warning:"))]
    if runtime:
        return f"warnings {runtime[:3]}"
    expects = {i["expect"] for i in infos}
    if outcome == "error":
        if "Il2pkpdError" not in answer.get("mro", []):
            return f"error of type {answer.get('type')} is not an Il2pkpdError"
        msg = answer["message"]
        if "\n" in msg or "\r" in msg:
            return f"message of several lines: {msg[:300]!r}"
        if len(msg) > 1000:
            return f"message of {len(msg)} characters: {msg[:200]!r}..."
        if not LOCATION.search(msg):
            return f"message names no key or line: {msg[:300]!r}"
        if expects == {"same"} and base.get("outcome") == "ok":
            return f"a harmless change ({infos}) made a valid model fail: {msg[:300]!r}"
        if len(infos) == 1 and infos[0]["expect"] == "invalid":
            key = infos[0].get("key")
            if infos[0]["kind"] == "text":
                if "line" not in msg and "TOML" not in msg and "UTF-8" not in msg:
                    return f"a file-level error that names no line: {msg[:300]!r}"
            elif key and _shown_key(key) not in msg and infos[0].get("old", "\0") not in msg and infos[0]["kind"] != "section-drop":
                return f"message does not name the key {key!r}: {msg[:300]!r}"
        return None
    if "invalid" in expects:
        return f"accepted a model the mutation made invalid: {infos}"
    if expects == {"same"} and base.get("outcome") == "ok":
        a, b = answer["fingerprint"], base["fingerprint"]
        if len(a) != len(b) or any(not _close(x, y) for x, y in zip(a, b)):
            return f"a rewrite that must not change the model changed it: {a[:6]} vs {b[:6]}"
    return None


def _shown_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else repr(key)[:20]


def _close(x: float, y: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))


def test_model_fuzz(worker, tmp_path):
    n, s = budget(300), seed()
    rng = random.Random(s)
    tally = Tally("models", s)
    bases = {}
    for name, data in (("fuzzpd", PKPD), ("pk1_oral", None)):
        p = tmp_path / f"{name}.toml"
        p.write_text(to_toml(data) if data is not None else to_toml(__import__("tomllib").loads((ROOT / "models" / "pk1_oral.toml").read_text())))
        bases[name] = worker.run({"kind": "model", "path": str(p)}, timeout=60)
        assert bases[name]["outcome"] == "ok", bases[name]
    for case_id in range(n):
        base_name, raw, infos = mutate(rng)
        path = tmp_path / f"case{case_id % 50}.toml"
        path.write_bytes(raw)
        answer = worker.run({"kind": "model", "path": str(path)}, timeout=30)
        tally.add(f"{answer['outcome']}/{'+'.join(sorted({i['expect'] for i in infos}))}", answer.get("elapsed", 0.0))
        verdict = judge(answer, infos, bases[base_name])
        if verdict is not None:
            tally.fail(case_id, verdict, {"mutations": infos, "input": raw[:1500].decode("utf-8", "replace"), "answer": answer})
    tally.write()
    print(tally.summary())
    assert not tally.failures, tally.summary()
    assert tally.counts.get("ok/same", 0) > 0 and sum(v for k, v in tally.counts.items() if k.startswith("error")) >= n // 3, tally.counts
