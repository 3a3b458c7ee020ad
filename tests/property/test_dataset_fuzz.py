"""Fuzz suite for NONMEM-style datasets (seeded generator; a worker process per suite).

Every case starts from a valid dataset for ``pk1_oral`` (1-3 subjects, bolus doses into the
depot or the central compartment, ADDL, observations, EVID 2 rows, optional MDV, DVID, CL
and text columns), applies 0-3 mutations and reads the result with
:func:`il2pkpd.io.nonmem.read_nonmem_csv`, ``problems``, ``subject_records``,
``subject_values`` and, for a sample of accepted cases, :func:`il2pkpd.prediction.predict`.

Mutations: drop, duplicate, rename, reorder and re-case columns; non-numeric cells, inf,
nan, huge (1e101 .. 1e400), tiny, negative and zero values, blanks and ``.`` in every
column; non-integer IDs, EVID, CMT, ADDL, MDV, DVID; IDs moved to another subject,
re-spelled (``1.0``, ``01``, ``1e0``) or made text; unsorted, duplicated and swapped times;
duplicated, deleted, swapped rows; thousands separators quoted and unquoted, decimal
commas; empty files, header only, blank lines, BOM, CRLF, no final newline, trailing
commas; whole files or single rows separated by ``;``, tabs or ``|``; NUL and non-UTF-8
bytes; 200,000-character fields; truncated files; parameter columns (CL) negative,
infinite, huge or varying within a subject.

The oracle is an independent reading of the same bytes under NONMEM's rules
(:func:`reference`): which tables are valid, the subjects (a change of ID between
consecutive rows starts one), their records, and, for bolus-only data, the analytic
one-compartment concentrations. Each case must end in either

* a :class:`~il2pkpd.errors.SolverError` naming the subject, for data the solver cannot
  finish (TIME 1e6 h needs more steps than ``max_steps`` under the explicit default solver:
  counted in the report, not a failure);
* an :class:`~il2pkpd.errors.Il2pkpdError` whose message is one line naming the row (or,
  for a file-level problem, the line, column or header) and, for an injected value, that
  value; a table with several problems gives a first line ``N problems in the dataset:``
  and one line per problem, each naming its row (the CLI prints them as a list); or
* a result equal to the reference: the same subjects with the same records, and
  predictions equal to the analytic solution (rel. 1e-5), never NaN;

never another exception, a RuntimeWarning, a hang (each case has a time limit; a case
that runs past it is a failure) or the acceptance of a table the reference refuses.
Mutations that must not change anything (BOM, CRLF, blank lines, column order and case,
quoting, blanks around values, a trailing comma on every line, a missing final newline)
must give exactly the unmutated result.

Budget: 300 cases by default (about 15 s). The larger run::

    IL2PKPD_FUZZ_CASES=20000 IL2PKPD_FUZZ_REPORT=fuzz.json \\
        .venv/bin/python -m pytest tests/property/test_dataset_fuzz.py tests/property/test_model_fuzz.py -q

Results of larger runs are in ``tests/property/README.md``.
"""

from __future__ import annotations

import csv
import io
import math
import random
import re

import pytest

from _fuzz import Tally, budget, seed

PARAMS = {"ka": 1.0, "cl": 1.0, "v": 20.0}  # pk1_oral's typical values
MAX_MAGNITUDE = 1e100
MAX_ADDL = 100_000
EVENT_COLS = ("id", "time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss", "dv", "mdv", "dvid")
NUMERIC = ("time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss", "dv", "mdv", "dvid")
INTEGER = ("evid", "cmt", "addl", "ss", "dvid", "mdv")
PARAM_COLS = ("ka", "cl", "v")
DOSE_PARAM_COLS = ("f1", "alag1", "r1", "d1", "f2", "alag2", "r2", "d2")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
NONFINITE = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


# --------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e6 else repr(float(x))


def base_table(rng: random.Random) -> tuple[list[str], list[list[str]]]:
    """A valid dataset for pk1_oral, as a header and rows of text cells."""
    cols = ["ID", "TIME", "EVID", "AMT", "CMT", "DV"]
    addl = rng.random() < 0.4
    if addl:
        cols += ["II", "ADDL"]
    for opt, p in (("RATE", 0.3), ("MDV", 0.4), ("DVID", 0.4), ("CL", 0.3), ("NOTE", 0.2)):
        if rng.random() < p:
            cols.append(opt)
    if rng.random() < 0.3:
        rest = cols[2:]
        rng.shuffle(rest)
        cols = cols[:2] + rest
    n_subj = rng.randint(1, 3)
    text_ids = rng.random() < 0.15
    ids = [f"P{k:03d}" for k in rng.sample(range(1, 999), n_subj)] if text_ids else [str(k) for k in rng.sample(range(1, 200), n_subj)]
    rows = []
    for sid in ids:
        kinds = ["dose"] + [rng.choice(["dose", "obs", "obs", "obs", "other"]) for _ in range(rng.randint(1, 5))]
        times = sorted(rng.sample(range(1, 4800), len(kinds) - 1))
        times = [0.0] + [t / 100 for t in times]
        cl = round(rng.uniform(0.2, 3.0), 3)
        for kind, t in zip(kinds, times):
            cell = {"ID": sid, "TIME": _num(t), "RATE": "0", "CL": _num(cl), "NOTE": rng.choice(["", "ok", "a, b", "x"])}
            if kind == "dose":
                n_addl = rng.randint(0, 3) if addl else 0
                cell.update(EVID="1", AMT=_num(round(rng.uniform(1, 1000), 1)), CMT=rng.choice(["1", "2"]), DV="", MDV="1", DVID="0",
                            II=rng.choice(["12", "24"]) if n_addl else "0", ADDL=str(n_addl))
            elif kind == "obs":
                cell.update(EVID="0", AMT="0", CMT="2", DV=_num(round(rng.uniform(0.1, 10), 3)), MDV="0", DVID="1", II="0", ADDL="0")
            else:
                cell.update(EVID="2", AMT="0", CMT="2", DV="", MDV="1", DVID="0", II="0", ADDL="0")
            rows.append([cell[c] for c in cols])
    return cols, rows


def serialize(cols, rows, *, quote_all=False, unquoted=()) -> str:
    """CSV text; cells with ',' or '"' are quoted unless their (row, col) is in ``unquoted``."""
    def fmt(v, where):
        if quote_all or (("," in v or '"' in v) and where not in unquoted):
            return '"' + v.replace('"', '""') + '"'
        return v
    lines = [",".join(fmt(c, None) for c in cols)]
    lines += [",".join(fmt(v, (i, j)) for j, v in enumerate(r)) for i, r in enumerate(rows)]
    return "\n".join(lines) + "\n"


# value tokens by kind (what a cell may be set to)
TOKENS = {
    "text": ["x", "abc", "one", "1..2", "--1", "1e", "0x10", "NA", "nan", "NaN", "None", "null", "true", "1_000", "1d2", "١", "½", "1 2"],
    "nonfinite": ["inf", "-inf", "Infinity", "+inf", "1e400", "-1e400"],
    "huge": ["1e101", "-1e101", "1e150", "1e300", "-1e300", "1.5e200"],
    "moderate": ["1e99", "1e-300", "0", "-0", "0.0", "1", "2", "3", "4", "5", "-1", "-2", "-0.5", "-1e6", "24", "1e6", "100000", "100001"],
    "nonint": ["1.5", "0.5", "2.0001", "-1.5", "1e-9", "3.3"],
    "blank": ["", "."],
    "comma": ["1,000", "2,5", "12,345.6"],
}


def mutate(rng: random.Random, cols, rows) -> tuple[bytes, list[dict], bool]:
    """0-3 mutations; the text as bytes, a description of each, and whether predictions
    are wanted for this case."""
    cols, rows = list(cols), [list(r) for r in rows]
    infos: list[dict] = []
    opts = {"quote_all": False, "unquoted": set()}
    text_muts: list[str] = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
        kind = rng.choice(["cell"] * 8 + ["id"] * 2 + ["time"] + ["row"] * 2 + ["column"] * 2 + ["preserve"] * 2 + ["text"] * 2 + ["param"])
        if kind == "cell" and rows:
            i, j = rng.randrange(len(rows)), rng.randrange(len(cols))
            if j >= len(rows[i]):  # a row shortened by an earlier mutation
                continue
            cat = rng.choice(list(TOKENS))
            tok = rng.choice(TOKENS[cat])
            rows[i][j] = tok
            if cat == "comma" and rng.random() < 0.5:
                opts["unquoted"].add((i, j))
                cat = "comma-unquoted"
            infos.append({"kind": "cell", "cat": cat, "row": i + 1, "column": cols[j], "token": tok})
        elif kind == "id" and rows:
            j = next((k for k, c in enumerate(cols) if c.strip().lower() == "id"), None)
            if j is None:
                continue
            i = rng.randrange(len(rows))
            if j >= len(rows[i]):
                continue
            old = rows[i][j].strip()
            what = rng.choice(["nonint", "other", "respell", "respell-all", "text", "blank"])
            if what == "nonint":
                rows[i][j] = rng.choice(["1.5", f"{old}.5" if old.isdigit() else "2.5", "1e-3", "inf", "nan"])
            elif what == "other":
                rows[i][j] = rng.choice([r[j] for r in rows if j < len(r)])
            elif what in ("respell", "respell-all") and old.isdigit():
                new = rng.choice([f"{old}.0", f"0{old}", f"+{old}", f"{old}e0", f"{old}.00"])
                for r in rows if what == "respell-all" else [rows[i]]:
                    if j < len(r) and r[j].strip() == old:
                        r[j] = new
                        if what == "respell":
                            break
            elif what == "text":
                rows[i][j] = rng.choice(["A", "subject one", "P1", "1a"])
            else:
                rows[i][j] = rng.choice(["", "."])
            infos.append({"kind": "id", "what": what, "row": i + 1, "token": rows[i][j]})
        elif kind == "time" and len(rows) > 1:
            j = next((k for k, c in enumerate(cols) if c.strip().lower() == "time"), None)
            if j is None:
                continue
            i = rng.randrange(1, len(rows))
            if j >= min(len(rows[i]), len(rows[i - 1])):
                continue
            what = rng.choice(["earlier", "same", "swap"])
            if what == "earlier":
                rows[i][j] = _num(max(0.0, _float(rows[i - 1][j], 1.0) - rng.choice([0.01, 1, 10])))
            elif what == "same":
                rows[i][j] = rows[i - 1][j]
            else:
                rows[i][j], rows[i - 1][j] = rows[i - 1][j], rows[i][j]
            infos.append({"kind": "time", "what": what, "row": i + 1})
        elif kind == "row" and rows:
            what = rng.choice(["duplicate", "duplicate-adjacent", "delete", "swap", "to-end", "extra-field", "missing-field"])
            i = rng.randrange(len(rows))
            if what == "duplicate":
                rows.insert(rng.randrange(len(rows) + 1), list(rows[i]))
            elif what == "duplicate-adjacent":
                rows.insert(i + 1, list(rows[i]))
            elif what == "delete" and len(rows) > 1:
                del rows[i]
            elif what == "swap" and len(rows) > 1:
                k = rng.randrange(len(rows))
                rows[i], rows[k] = rows[k], rows[i]
            elif what == "to-end":
                rows.append(rows.pop(i))
            elif what == "extra-field":
                rows[i].insert(rng.randrange(len(rows[i]) + 1), rng.choice(["", "1", "000"]))
            elif what == "missing-field" and rows[i]:
                del rows[i][rng.randrange(len(rows[i]))]
            infos.append({"kind": "row", "what": what, "row": i + 1})
        elif kind == "column" and cols:
            what = rng.choice(["drop", "duplicate", "rename", "rename-lower", "rename-other"])
            j = rng.randrange(len(cols))
            if what == "drop":
                del cols[j]
                for r in rows:
                    if j < len(r):
                        del r[j]
            elif what == "duplicate":
                cols.append(cols[j])
                for r in rows:
                    r.append(r[j] if j < len(r) else "")
            elif what == "rename":
                cols[j] = rng.choice(["X", "TIME2", "Id ", "AMT_MG", "KA", "V", "F1", "WT", "ALAG2"])
            elif what == "rename-lower":
                cols[j] = cols[j].lower()
            else:
                cols[j] = rng.choice(cols)
            infos.append({"kind": "column", "what": what, "column": cols[j] if j < len(cols) else None})
        elif kind == "param" and rows:
            j = next((k for k, c in enumerate(cols) if c == "CL"), None)
            if j is None:
                cols.append("CL")
                for r in rows:
                    r.append("1.5")
                j = len(cols) - 1
            i = rng.randrange(len(rows))
            if j >= len(rows[i]):
                continue
            tok = rng.choice(["-1", "inf", "1e200", "0", "2.5", "x", "", "1e-300", "1e99"])
            rows[i][j] = tok
            infos.append({"kind": "cell", "cat": "param", "row": i + 1, "column": "CL", "token": tok})
        elif kind == "preserve":
            what = rng.choice(["reorder", "case", "quote", "spaces", "unused-column"])
            if what == "reorder":
                order = list(range(len(cols)))
                rng.shuffle(order)
                cols = [cols[k] for k in order]
                rows = [[r[k] if k < len(r) else "" for k in order] + r[len(cols):] for r in rows]
            elif what == "case":
                cols = [c.lower() if rng.random() < 0.5 else c.upper() for c in cols]
                if len({c.lower() for c in cols}) < len(cols):  # made two names equal
                    what = "case-collision"
            elif what == "quote":
                opts["quote_all"] = True
            elif what == "spaces":
                rows = [[f" {v} " if v and rng.random() < 0.5 else v for v in r] for r in rows]
            else:
                cols.append(rng.choice(["WT2", "COMMENT", "SITE"]))
                for r in rows:
                    r.append(rng.choice(["70", "a, b", ""]))
            infos.append({"kind": "preserve", "what": what})
        elif kind == "text":
            text_muts.append(rng.choice(["bom", "crlf", "blank-lines", "no-final-newline", "trailing-comma", "empty", "header-only",
                                         "only-blank", "semicolon", "tab", "pipe", "row-semicolon", "nul", "latin1", "long-field",
                                         "truncate", "garbage-line"]))
            infos.append({"kind": "text", "what": text_muts[-1]})
    text = serialize(cols, rows, quote_all=opts["quote_all"], unquoted=opts["unquoted"])
    for what in text_muts:
        lines = text.split("\n")
        if what == "crlf":
            text = text.replace("\n", "\r\n")
        elif what == "blank-lines":
            k = rng.randrange(1, len(lines)) if len(lines) > 1 else 0
            text = "\n".join(lines[:k] + [""] + lines[k:])
        elif what == "no-final-newline":
            text = text.rstrip("\n")
        elif what == "trailing-comma":
            text = "\n".join(ln + "," if ln else ln for ln in lines)
        elif what == "empty":
            text = ""
        elif what == "header-only":
            text = lines[0] + "\n"
        elif what == "only-blank":
            text = "\n\n  \n"
        elif what in ("semicolon", "tab", "pipe"):
            text = text.replace(",", {"semicolon": ";", "tab": "\t", "pipe": "|"}[what])
        elif what == "row-semicolon" and len(lines) > 2:
            k = rng.randrange(1, len(lines) - 1)
            lines[k] = lines[k].replace(",", ";")
            text = "\n".join(lines)
        elif what == "long-field" and len(lines) > 2:
            k = rng.randrange(1, len(lines) - 1)
            lines[k] = "1" * 200_000 + lines[k]
            text = "\n".join(lines)
        elif what == "truncate" and text:
            text = text[: rng.randrange(len(text))]
        elif what == "garbage-line":
            lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(["#comment", "}{", "\"unterminated", "1,2,3,4,5,6,7,8,9,10,11,12,13,14"]))
            text = "\n".join(lines)
    raw = text.encode("utf-8")
    for what in text_muts:
        if what == "bom":
            raw = b"\xef\xbb\xbf" + raw
        elif what == "nul" and raw:
            k = rng.randrange(len(raw))
            raw = raw[:k] + b"\x00" + raw[k:]
        elif what == "latin1" and raw:
            k = rng.randrange(len(raw))
            raw = raw[:k] + b"\xe9" + raw[k:]
    return raw, infos, rng.random() < 0.1


def _float(s: str, default: float) -> float:
    try:
        return float(s)
    except ValueError:
        return default


# --------------------------------------------------------------------------------------
# the reference: NONMEM's rules, read independently of il2pkpd
# --------------------------------------------------------------------------------------


class Invalid(Exception):
    pass


class Unknown(Exception):
    """A table the reference does not judge (rules it does not model)."""


def _value(tok: str):
    """None (missing), a float, or raise Invalid."""
    t = tok.strip()
    if t in ("", "."):
        return None
    if NUMBER.fullmatch(t):
        return float(t)
    if t.lower() in NONFINITE:
        raise Invalid(f"non-finite {tok!r}")
    raise Invalid(f"non-numeric {tok!r}")


def reference(raw: bytes) -> dict:
    """Judge a dataset under NONMEM's rules: {"status": "valid", "subjects": [...], "pred": [...]},
    {"status": "invalid", "why": ...} or {"status": "unknown", "why": ...}."""
    try:
        return _reference(raw)
    except Invalid as exc:
        return {"status": "invalid", "why": str(exc)}
    except Unknown as exc:
        return {"status": "unknown", "why": str(exc)}


def _reference(raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("not UTF-8") from None
    if "\x00" in text:
        raise Invalid("NUL byte")
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), skipinitialspace=True) if r and not (len(r) == 1 and not r[0].strip())]
    except csv.Error as exc:
        raise Invalid(f"csv: {exc}") from None
    if not rows:
        raise Invalid("empty")
    header = [h.strip() or f"Unnamed: {j}" for j, h in enumerate(rows[0])]
    if len(set(header)) < len(header):
        raise Invalid("duplicate header")
    data = [[f.strip() for f in r] for r in rows[1:]]
    if any(len(r) != len(header) for r in data):
        raise Invalid("field count")
    low: dict[str, int] = {}
    for j, h in enumerate(header):
        if h.lower() in low:
            raise Unknown("names differing in case")
        low[h.lower()] = j
    if "id" not in low or "time" not in low:
        raise Invalid("no ID/TIME")
    if not data:
        raise Invalid("no rows")
    if any(c in low for c in ("cens", "blq", "lloq", "event")) or any(c in low for c in DOSE_PARAM_COLS):
        raise Unknown("columns the reference does not model")
    n = len(data)
    # subjects: a change of ID between consecutive rows starts one; IDs are integers
    keys, blocks, seen = [], [], {}
    for i, r in enumerate(data):
        tok = r[low["id"]]
        if tok in ("", ".") or tok.lower().lstrip("+-") in ("inf", "infinity", "nan"):
            raise Invalid("ID missing or not finite")
        if NUMBER.fullmatch(tok):
            f = float(tok)
            if not (math.isfinite(f) and f.is_integer()):
                raise Invalid("non-integer ID")
            key = int(f)
        else:
            key = ("text", tok)
        if i == 0 or key != keys[-1]:
            if key in seen:
                raise Invalid("non-contiguous ID")
            seen[key] = i
            blocks.append([i])
        else:
            if tok != data[blocks[-1][0]][low["id"]]:
                raise Invalid("ID spelled two ways")
            blocks[-1].append(i)
        keys.append(key)
    col = {}
    for c in NUMERIC:
        if c in low:
            col[c] = [_value(r[low[c]]) for r in data]
            for v in col[c]:
                if v is not None and abs(v) > MAX_MAGNITUDE:
                    raise Invalid(f"magnitude {c}")
    get = lambda c, i, d: d if c not in col or col[c][i] is None else col[c][i]  # noqa: E731
    recs = []
    for i in range(n):
        t = get("time", i, None)
        if t is None:
            raise Invalid("TIME missing")
        amt = get("amt", i, 0.0)
        evid = get("evid", i, 1.0 if amt > 0 else 0.0)
        for c in INTEGER:
            v = get(c, i, 0.0)
            if v != int(v):
                raise Invalid(f"non-integer {c}")
        if evid not in (0, 1, 2, 3, 4):
            raise Invalid("EVID")
        mdv, ss, addl, ii, rate = get("mdv", i, 0.0), get("ss", i, 0.0), get("addl", i, 0.0), get("ii", i, 0.0), get("rate", i, 0.0)
        cmt, dvid = get("cmt", i, 1.0), get("dvid", i, 0.0)
        if mdv not in (0, 1):
            raise Invalid("MDV")
        if ss not in (0, 1, 2):
            raise Invalid("SS")
        if not 0 <= addl <= MAX_ADDL:
            raise Invalid("ADDL")
        if ss != 0 or evid in (3, 4):
            raise Unknown("steady state / reset")
        if evid == 0 and mdv == 1:
            evid = 2.0
        dose = evid in (1, 4)
        if dose:
            if amt <= 0:
                raise Invalid("AMT of a dose")
            if rate < 0:
                raise (Unknown if rate in (-1, -2) else Invalid)("RATE")
            if addl > 0 and ii <= 0:
                raise Invalid("ADDL without II")
            if cmt not in (1, 2):
                raise Invalid("dose CMT")
        if cmt != 0 and cmt not in (1, 2):
            raise Invalid("CMT")
        if ii < 0:
            raise Invalid("II < 0")
        if dvid not in (0, 1):  # on every row: PRED is given on every record
            raise Invalid("DVID")
        recs.append((t, int(evid), amt, int(cmt), rate, ii, int(addl), int(ss)))
    for b in blocks:
        for a, c in zip(b, b[1:]):
            if recs[c][0] < recs[a][0]:
                raise Invalid("TIME decreasing")
    dup_cols = [low[c] for c in EVENT_COLS if c in low]
    firsts = set()
    for r in data:
        k = tuple(r[j] for j in dup_cols)
        if k in firsts:
            raise Invalid("duplicated row")
        firsts.add(k)
    # parameter columns: numeric, finite, >= 0, constant within a subject, given for each subject
    params = [dict(PARAMS) for _ in blocks]
    for c in PARAM_COLS:
        if c not in low:
            continue
        vals = [_value(r[low[c]]) for r in data]
        for v in vals:
            if v is not None and (abs(v) > MAX_MAGNITUDE or v < 0):
                raise Invalid(f"parameter {c}")
        for b, p in zip(blocks, params):
            got = [vals[i] for i in b if vals[i] is not None]
            if not got:
                raise Invalid(f"parameter {c} missing for a subject")
            if any(g != got[0] for g in got):
                raise Invalid(f"parameter {c} varies")
            p[c] = got[0]
    subjects = []
    for b in blocks:
        tok = data[b[0]][low["id"]]
        label = keys[b[0]] if isinstance(keys[b[0]], int) else tok
        subjects.append([label, [list(recs[i]) for i in b]])
    return {"status": "valid", "subjects": subjects, "pred": _analytic(blocks, recs, params)}


def _analytic(blocks, recs, params):
    """PRED of every row for bolus-only data: superposition of one-compartment solutions
    (None when the data hold infusions, or a parameter makes the formula singular)."""
    out = [None] * len(recs)
    for b, p in zip(blocks, params):
        ka, cl, v = p["ka"], p["cl"], p["v"]
        if v <= 0 or any(recs[i][4] != 0 for i in b):
            return None
        k = cl / v
        doses = []
        for i in b:
            t, evid, amt, cmt, rate, ii, addl, ss = recs[i]
            if evid in (1, 4):
                doses += [(t + m * ii, amt, cmt, i, m) for m in range(addl + 1)]
        for r in b:
            tr = recs[r][0]
            c = 0.0
            for td, amt, cmt, row, m in doses:
                if td < tr or (td == tr and (m >= 1 or row <= r)):
                    dt = tr - td
                    if cmt == 2:
                        c += amt / v * math.exp(-k * dt)
                    elif ka == 0:
                        pass
                    elif abs(ka - k) < 1e-9:
                        c += amt * k * dt * math.exp(-k * dt) / v
                    else:
                        c += amt * ka / (v * (ka - k)) * (math.exp(-k * dt) - math.exp(-ka * dt))
            out[r] = c
    return out


# --------------------------------------------------------------------------------------
# the judge
# --------------------------------------------------------------------------------------

LOCATION = re.compile(r"\brow \d+|\bline \d+|column|header|file|`ID`|`TIME`|UTF-8|CSV|no rows|empty")


def message_problems(msg: str) -> list[str]:
    """What is wrong with an error message's form (empty when it is fine)."""
    bad = []
    lines = msg.split("\n")
    if len(lines) > 1:
        if not re.search(r"\d+ problems in the dataset:$", lines[0]):
            bad.append("a message of several lines that is not a list of problems")
        for ln in lines[1:]:
            if not (re.match(r"  row \d+ ", ln) or re.match(r"  \.\.\. and \d+ more$", ln)):
                bad.append(f"a listed problem that names no row: {ln[:200]!r}")
    for ln in lines:
        if len(ln) > 600:
            bad.append(f"a line of {len(ln)} characters")
    if not LOCATION.search(lines[-1] if len(lines) == 1 else lines[1]):
        bad.append("names no row, line, column or file")
    if "Traceback" in msg:
        bad.append("a traceback in the message")
    return bad


def judge(answer: dict, ref: dict, infos: list[dict], base: dict | None) -> str | None:
    """None when the case is fine, else what is wrong."""
    outcome = answer["outcome"]
    if outcome in ("bug", "died", "hang"):
        return f"{outcome}: {answer.get('type', '')}: {answer.get('message', '')[:300]}"
    runtime = [w for w in answer.get("warnings", []) if w.startswith(("RuntimeWarning", "Warning:"))]
    if runtime:
        return f"warnings {runtime[:3]}"
    preserve = all(i["kind"] == "preserve" or (i["kind"] == "text" and i["what"] in PRESERVING_TEXT) for i in infos)
    preserve = preserve and not any(i.get("what") == "case-collision" for i in infos)
    if outcome == "error":
        if "Il2pkpdError" not in answer.get("mro", []):
            return f"error of type {answer.get('type')} is not an Il2pkpdError"
        msg = answer["message"]
        if answer.get("type") == "SolverError":
            # valid data the solver cannot finish (e.g. TIME 1e6 h: an explicit solver's
            # stability limit needs more than max_steps): a documented outcome, naming the subject
            return None if "\n" not in msg and re.search(r"\bsubject \S+", msg) else f"solver error message {msg[:300]!r}"
        bad = message_problems(msg)
        if bad:
            return f"message {bad}: {msg[:500]!r}"
        if ref["status"] == "valid" and preserve and base is not None and base.get("outcome") == "ok":
            return f"a harmless change ({[i.get('what') for i in infos]}) made a valid table fail: {msg[:300]!r}"
        if ref["status"] == "invalid" and len(infos) == 1 and infos[0]["kind"] == "cell" and infos[0]["cat"] in ("text", "nonfinite", "huge", "nonint", "param"):
            info = infos[0]
            first = msg.split("\n")[1] if "\n" in msg else msg
            rows = {f"row {info['row'] + d}" for d in (-1, 0, 1)}
            if "ID" not in info["column"].upper() and not any(re.search(rf"{r}\b", first) for r in rows) and "line " not in first:
                return f"message does not name row {info['row']}: {msg[:300]!r}"
            tok = info["token"].strip()
            shown = {tok, repr(tok)} | ({repr(float(tok)), f"{float(tok):g}"} if _parses(tok) else set())
            if info["cat"] != "param" and info["column"].strip().upper() not in ("ID", "TIME") and not any(s in msg for s in shown if s):
                return f"message does not show the value {tok!r}: {msg[:300]!r}"
        return None
    # accepted
    if ref["status"] == "invalid":
        return f"accepted a table the reference refuses ({ref['why']}); mutations {infos}"
    if ref["status"] == "valid":
        got = answer["structure"]
        if _norm(got) != _norm(ref["subjects"]):
            return f"different subject structure: got {str(got)[:400]} expected {str(ref['subjects'])[:400]}"
        if "pred" in answer:
            if any(math.isnan(x) for x in answer["pred"]):
                return f"NaN predictions {answer['pred'][:10]}"
            if ref["pred"] is not None:
                for r, (a, b) in enumerate(zip(answer["pred"], ref["pred"])):
                    scale = max(1e-12, max(abs(x) for x in ref["pred"]))
                    if abs(a - b) > 1e-5 * scale:
                        return f"prediction of row {r + 1}: {a!r}, analytic {b!r}"
    if preserve and base is not None and base.get("outcome") == "ok" and _norm(answer["structure"]) != _norm(base["structure"]):
        return "a harmless change altered the subjects"
    return None


PRESERVING_TEXT = {"bom", "crlf", "blank-lines", "no-final-newline", "trailing-comma"}


def _parses(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _norm(structure):
    return [[s[0], [[float(x) for x in r] for r in s[1]]] for s in structure]


# --------------------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------------------


def test_dataset_fuzz(worker, tmp_path):
    n, s = budget(300), seed()
    rng = random.Random(s)
    tally = Tally("datasets", s)
    for case_id in range(n):
        cols, rows = base_table(rng)
        base_raw = serialize(cols, rows).encode()
        raw, infos, want_pred = mutate(rng, cols, rows)
        path = tmp_path / f"case{case_id % 50}.csv"
        base = None
        if raw != base_raw and all(i["kind"] in ("preserve", "text") for i in infos):
            path.write_bytes(base_raw)
            base = worker.run({"kind": "dataset", "path": str(path)}, timeout=60)
        path.write_bytes(raw)
        answer = worker.run({"kind": "dataset", "path": str(path), "predict": want_pred}, timeout=60)
        ref = reference(raw)
        tally.add(f"{answer['outcome']}/{ref['status']}", answer.get("elapsed", 0.0))
        verdict = judge(answer, ref, infos, base)
        if "pred" in answer and ref["status"] == "valid" and ref["pred"] is not None:
            tally.note("predictions compared with the analytic solution")
        if answer.get("type") == "SolverError":
            tally.note(f"SolverError on {ref['status']} data")
        if verdict is not None:
            tally.fail(case_id, verdict, {"mutations": infos, "input": raw[:3000].decode("utf-8", "replace"), "answer": answer})
    tally.write()
    print(tally.summary())
    assert not tally.failures, tally.summary()
    # the generator must reach both ends: accepted tables (checked against the reference) and refused ones
    assert tally.counts.get("ok/valid", 0) >= n // 10 and sum(v for k, v in tally.counts.items() if k.startswith("error")) >= n // 10, tally.counts


def test_reference_agrees_with_a_hand_computed_case():
    # one subject, 100 mg into the depot at 0, samples at 1 and 2 h: the textbook formula
    raw = b"ID,TIME,EVID,AMT,CMT,DV\n1,0,1,100,1,\n1,1,0,0,2,1\n1,2,0,0,2,1\n"
    ref = reference(raw)
    k, ka, v = 0.05, 1.0, 20.0
    c = lambda t: 100 * ka / (v * (ka - k)) * (math.exp(-k * t) - math.exp(-ka * t))  # noqa: E731
    assert ref["status"] == "valid" and ref["pred"] == pytest.approx([0.0, c(1), c(2)])
    assert reference(b"ID,TIME,AMT\n1,0,100\n1.5,1,0\n1,2,0\n")["status"] == "invalid"
