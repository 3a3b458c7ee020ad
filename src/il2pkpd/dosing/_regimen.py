"""Regimens: composable dose blocks and a short regimen language.

Grammar (one block; blocks are joined by ``then``)::

    <amount> <unit>[/m2|/kg] [<route>] [over <duration>] [<frequency>] [x<count>] [at <time>]

* ``unit``: any amount unit (``MIU``, ``IU``, ``mg``, ``ug``, ``nmol`` ...), optionally per
  ``m2`` (body surface area) or ``kg`` (body weight);
* ``route``: ``sc``, ``im``, ``po``/``oral`` (into the first dose-able compartment, the
  depot) or ``iv`` (into the ``central`` compartment);
* ``over <duration>``: a zero-order infusion of that length (e.g. ``over 2h``);
* ``frequency``: ``once``, ``qd`` (daily), ``bid``, ``tid``, ``qid``, ``qw`` (weekly),
  ``q<N><unit>`` (``q12h``, ``q3d``, ``q2w``), ``qod`` (every other day);
* ``x<count>``: number of doses (default 1);
* ``at <time>``: time of the first dose of the block (default: see below).

Blocks after ``then`` start one of *their own* intervals after the last dose of the
previous block: ``"1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"`` doses on days 1-5, then on
days 12, 19, ..., 54 (IVORY's inferred schedule, BRIEF §1.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import RegimenError
from ..units import UnitError, conversion_factor, convert_amount, drug_named, parse_unit
from ._records import MAX_ADDL, MAX_MAGNITUDE

__all__ = ["DoseBlock", "Regimen", "parse_regimen", "regimen_from_records"]

_FREQ_FIXED = {"once": None, "qd": "1 d", "daily": "1 d", "bid": "12 h", "tid": "8 h", "qid": "6 h", "qw": "1 wk", "weekly": "1 wk", "qod": "2 d"}
_ROUTES = {"sc", "im", "po", "oral", "iv"}
_DURATION = re.compile(r"^(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*([A-Za-z]+)$")
_QN = re.compile(r"^q(\d+(?:\.\d*)?)\s*([A-Za-z]+)$")
_COUNT = re.compile(r"^x(\d+)$")


def _duration(text: str, whole: str, what: str) -> tuple[float, str]:
    m = _DURATION.match(text)
    if not m:
        raise RegimenError(f"{what} must look like '12h' or '3d', got {text!r} in regimen {whole!r}")
    value, unit = float(m.group(1)), m.group(2)
    try:
        if parse_unit(unit).dims != parse_unit("h").dims:
            raise UnitError("")
    except UnitError:
        raise RegimenError(f"{what} has unknown time unit {unit!r} in regimen {whole!r}; use min, h, d, wk") from None
    return value, unit


@dataclass(frozen=True)
class DoseBlock:
    """``count`` doses of ``amount`` ``unit`` every ``interval`` (``interval_unit``).

    Attributes
    ----------
    amount, unit
        Dose size and its unit (``"MIU"``, ``"MIU/m2"``, ``"mg/kg"`` ...).
    route
        ``sc``, ``im``, ``po``, ``oral`` or ``iv``.
    count
        Number of doses (>= 1).
    interval, interval_unit
        Dosing interval (> 0 when ``count > 1``).
    duration, duration_unit
        Infusion duration (0 for a bolus).
    start, start_unit
        Time of the first dose; ``None`` to follow the previous block.
    """

    amount: float
    unit: str
    route: str = "sc"
    count: int = 1
    interval: float = 0.0
    interval_unit: str = "d"
    duration: float = 0.0
    duration_unit: str = "h"
    start: float | None = None
    start_unit: str = "d"
    text: str = ""

    def __post_init__(self):
        where = f" in regimen {self.text!r}" if self.text else ""
        if not self.amount > 0:
            raise RegimenError(f"`amount` must be > 0, got {self.amount!r} {self.unit}{where}")
        if not self.amount <= MAX_MAGNITUDE:  # also catches inf (see _records: no physical amount comes near 1e100)
            raise RegimenError(f"`amount` must be finite and at most {MAX_MAGNITUDE:g}, got {self.amount!r} {self.unit}{where}")
        for name in ("interval", "duration", "start"):
            v = getattr(self, name)
            if v is not None and not abs(v) <= MAX_MAGNITUDE:
                raise RegimenError(f"`{name}` must be finite and at most {MAX_MAGNITUDE:g}, got {v!r}{where}")
        try:
            u = parse_unit(self.unit)
        except UnitError:
            raise RegimenError(f"`unit` {self.unit!r} is not a known dose unit{where}; use e.g. MIU, IU, mg, ug, nmol, MIU/m2, mg/kg") from None
        amount_dims = [parse_unit(x).dims for x in ("mg", "MIU", "nmol", "mg/m2", "MIU/m2", "nmol/m2", "mg/kg", "MIU/kg", "nmol/kg")]
        if u.dims not in amount_dims:
            raise RegimenError(f"`unit` {self.unit!r} is not an amount of drug (optionally per m2 or per kg){where}")
        if self.route not in _ROUTES:
            raise RegimenError(f"`route` must be one of {sorted(_ROUTES)}, got {self.route!r}{where}")
        if not (1 <= self.count <= MAX_ADDL + 1) or int(self.count) != self.count:
            raise RegimenError(f"`count` must be an integer from 1 to {MAX_ADDL + 1:,}, got {self.count!r}{where}")
        if self.count > 1 and not self.interval > 0:
            raise RegimenError(f"`interval` must be > 0 for repeated doses, got {self.interval!r} {self.interval_unit}{where}")
        if self.interval < 0:
            raise RegimenError(f"`interval` must be > 0, got {self.interval!r} {self.interval_unit}{where}")
        if self.duration < 0:
            raise RegimenError(f"`duration` must be >= 0, got {self.duration!r} {self.duration_unit}{where}")

    @property
    def per(self) -> str | None:
        """``'m2'``, ``'kg'`` or ``None``: what the amount is normalised by."""
        u = parse_unit(self.unit)
        if u.dims == parse_unit("mg/m2").dims or u.dims == parse_unit("MIU/m2").dims or u.dims == parse_unit("nmol/m2").dims:
            return "m2"
        if u.dims in (parse_unit("mg/kg").dims,):
            return "kg"
        if u.dims in (parse_unit("MIU/kg").dims, parse_unit("nmol/kg").dims):
            return "kg"
        return None

    def describe(self) -> str:
        parts = [f"{self.amount:.12g} {self.unit} {self.route}"]
        if self.duration > 0:
            parts.append(f"over {self.duration:.12g}{self.duration_unit}")
        if self.count > 1:
            parts.append(f"q{self.interval:.12g}{self.interval_unit} x{self.count}")
        if self.start is not None:
            parts.append(f"at {self.start:.12g}{self.start_unit}")
        return " ".join(parts)


@dataclass(frozen=True)
class Regimen:
    """A sequence of dose blocks. Build with :func:`parse_regimen` or directly.

    Blocks compose with ``+`` (``loading + maintenance``), following the ``then`` rule.
    """

    blocks: tuple[DoseBlock, ...]
    text: str = field(default="", compare=False)

    def __post_init__(self):
        if not self.blocks:
            raise RegimenError("a regimen needs at least one dose block")

    def __add__(self, other: Regimen) -> Regimen:
        return Regimen(self.blocks + other.blocks, f"{self.text} then {other.text}")

    def __str__(self) -> str:
        return " then ".join(b.describe() for b in self.blocks)

    def dose_times(self, time_unit: str = "d") -> list[float]:
        """Times of every dose, in ``time_unit``."""
        times: list[float] = []
        last: float | None = None
        for b in self.blocks:
            step = b.interval * conversion_factor(b.interval_unit, time_unit) if b.count > 1 or b.interval > 0 else 0.0
            if b.start is not None:
                t0 = b.start * conversion_factor(b.start_unit, time_unit)
            elif last is None:
                t0 = 0.0
            else:
                if step <= 0:
                    raise RegimenError(f"block {b.describe()!r} follows another with `then` but has no interval; give `at <time>`")
                t0 = last + step
            block_times = [t0 + k * step for k in range(b.count)]
            times.extend(block_times)
            last = block_times[-1]
        return times

    def to_records(self, model, *, covariates: dict[str, float] | None = None) -> list:
        """NONMEM dose records for ``model`` (AMT converted to the dosed state's unit).

        Per-m2 and per-kg doses use the ``bsa`` (m2) and ``wt`` (kg) covariates, taken
        from ``covariates`` or the model's covariate defaults.
        """
        from ._records import Record

        cov = {c.name: c.value for c in model.covariates}
        cov.update(covariates or {})
        records = []
        tu = model.time_unit
        t_all = self.dose_times(tu)
        i = 0
        for bi, b in enumerate(self.blocks):
            state = _route_state(model, b.route, self.text)
            state_unit = state.unit
            amount, unit = b.amount, b.unit
            if b.per is not None:
                key = "bsa" if b.per == "m2" else "wt"
                if key not in cov:
                    raise RegimenError(
                        f"dose block {bi + 1} ({b.describe()!r}) is per {b.per}: the model needs a "
                        f"`{key}` covariate ({'m2' if key == 'bsa' else 'kg'}) to convert it"
                    )
                amount = amount * cov[key]
                unit = f"({unit})*{'m2' if key == 'bsa' else 'kg'}"
            drug = drug_named(model.drug)
            try:
                amt = convert_amount(amount, unit, state_unit, drug)
            except UnitError as exc:
                raise RegimenError(f"dose block {bi + 1} ({b.describe()!r}): {exc}") from None
            rate = 0.0
            if b.duration > 0:
                dur = b.duration * conversion_factor(b.duration_unit, tu)
                rate = amt / dur
            for _ in range(b.count):
                records.append(Record(time=t_all[i], evid=1, amt=amt, cmt=state.cmt, rate=rate, row=i))
                i += 1
        return records


def regimen_from_records(records, model) -> Regimen:
    """The regimen of a subject's dose records (ADDL expanded), for ``model``.

    Consecutive doses of the same amount, compartment and infusion rate at a constant
    interval become one block with an explicit start (``at``), so that
    ``regimen_from_records(r.to_records(m), m).to_records(m)`` gives the same records.
    Amounts are in the dosed state's unit; times in the model's time unit.

    Raises
    ------
    RegimenError
        For records a regimen cannot express (SS, resets, modelled rates, lag-free
        compartments that are not dose-able), naming the row.
    """
    tu = model.time_unit
    doses = []
    for r in records:
        if r.evid in (3, 4) or r.ss != 0 or r.rate < 0:
            if r.evid in (1, 3, 4) or r.ss:
                raise RegimenError(f"record at row {r.row + 1} (EVID {r.evid}, SS {r.ss}, RATE {r.rate}) cannot be written as a regimen; keep it as event records")
        if not r.is_dose:
            continue
        for k in range(r.addl + 1):
            doses.append((r.time + k * r.ii, r.amt, r.cmt, r.rate))
    if not doses:
        raise RegimenError("there are no dose records to turn into a regimen")
    doses.sort()
    blocks: list[list] = []
    for d in doses:
        cur = blocks[-1] if blocks else None
        if cur and cur[0][1:] == d[1:] and (len(cur) == 1 or abs((d[0] - cur[-1][0]) - (cur[1][0] - cur[0][0])) <= 1e-9 * max(1.0, d[0])):
            cur.append(d)
        else:
            blocks.append([d])
    out = []
    for b in blocks:
        t0, amt, cmt, rate = b[0]
        state = model.states[model.state_for_cmt(cmt)]
        route = "iv" if state.name == "central" else "sc"
        interval = b[1][0] - t0 if len(b) > 1 else 0.0
        duration = amt / rate if rate > 0 else 0.0
        out.append(DoseBlock(amount=amt, unit=state.unit, route=route, count=len(b), interval=interval, interval_unit=tu,
                             duration=duration, duration_unit=tu, start=t0, start_unit=tu))
    reg = Regimen(tuple(out))
    return Regimen(reg.blocks, str(reg))


def _route_state(model, route: str, text: str):
    dosable = [s for s in model.states if s.dose]
    if not dosable:
        raise RegimenError(f"model {model.name!r} has no dose-able state (`dose = true`)")
    if route == "iv":
        for s in dosable:
            if s.name == "central":
                return s
        raise RegimenError(f"route 'iv' needs a dose-able state named `central` in model {model.name!r} (regimen {text!r})")
    return min(dosable, key=lambda s: s.cmt)


def parse_regimen(text: str) -> Regimen:
    """Parse a regimen string, e.g. ``"1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"``.

    Raises
    ------
    RegimenError
        On unparseable text, unknown units or routes, amounts <= 0 and intervals <= 0,
        quoting the offending text.
    """
    if isinstance(text, Regimen):
        return text
    if not isinstance(text, str) or not text.strip():
        raise RegimenError(f"`regimen` must be a non-empty string such as '1.5 MIU sc qd x5', got {text!r}")
    blocks = []
    for part in re.split(r"\s+then\s+", text.strip(), flags=re.IGNORECASE):
        blocks.append(_parse_block(part.strip(), text))
    return Regimen(tuple(blocks), text)


def _parse_block(part: str, whole: str) -> DoseBlock:
    tokens = part.replace(",", " ").split()
    if len(tokens) < 2:
        raise RegimenError(f"cannot parse dose block {part!r} in regimen {whole!r}: expected '<amount> <unit> ...'")
    # amount may be glued to the unit: "100mg"
    m = re.match(r"^([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)([A-Za-zµ%/0-9]*)$", tokens[0])
    if not m:
        raise RegimenError(f"cannot parse the amount {tokens[0]!r} in regimen {whole!r}: expected a number")
    amount = float(m.group(1))
    rest = tokens[1:]
    if m.group(2):
        unit = m.group(2)
    else:
        unit = rest.pop(0)
    kw: dict = {"amount": amount, "unit": unit, "text": whole}
    i = 0
    while i < len(rest):
        tok = rest[i].lower()
        if tok in _ROUTES:
            kw["route"] = tok
        elif tok == "over":
            if i + 1 >= len(rest):
                raise RegimenError(f"'over' needs a duration such as '2h' in regimen {whole!r}")
            kw["duration"], kw["duration_unit"] = _duration(rest[i + 1], whole, "infusion duration")
            i += 1
        elif tok == "at":
            if i + 1 >= len(rest):
                raise RegimenError(f"'at' needs a time such as '11d' in regimen {whole!r}")
            kw["start"], kw["start_unit"] = _duration(rest[i + 1], whole, "start time")
            i += 1
        elif tok in _FREQ_FIXED:
            fixed = _FREQ_FIXED[tok]
            if fixed is not None:
                val, unit_ = fixed.split()
                kw["interval"], kw["interval_unit"] = float(val), unit_
        elif _QN.match(tok):
            q = _QN.match(tok)
            kw["interval"], kw["interval_unit"] = _duration(q.group(1) + q.group(2), whole, "dosing interval")
        elif _COUNT.match(tok):
            kw["count"] = int(_COUNT.match(tok).group(1))
        else:
            raise RegimenError(
                f"cannot parse {rest[i]!r} in regimen {whole!r}; expected a route (sc, im, po, iv), "
                "'over <duration>', a frequency (once, qd, bid, tid, qw, q12h, q3d), 'x<count>' or 'at <time>'"
            )
        i += 1
    if kw.get("count", 1) > 1 and "interval" not in kw:
        raise RegimenError(f"dose block {part!r} repeats (x{kw['count']}) but gives no frequency (qd, q12h ...) in regimen {whole!r}")
    if "interval" in kw and not kw["interval"] > 0:
        raise RegimenError(f"dosing interval must be > 0, got {kw['interval']!r} {kw['interval_unit']} in regimen {whole!r}")
    return DoseBlock(**kw)
