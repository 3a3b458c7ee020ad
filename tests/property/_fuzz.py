"""Shared machinery of the fuzz suites (``test_dataset_fuzz.py``, ``test_model_fuzz.py``).

Each generated input is written to a file and handed to a *worker*: a separate Python
process (``python _fuzz.py --worker``) that runs il2pkpd on it and answers with one JSON
line (the outcome, the exception's class and message, the subject structure, the
predictions). The test process only generates inputs and judges answers, so a case that
hangs (for instance inside a C loop, where no signal reaches Python) is caught: after the
case's time limit the worker is killed, the case recorded as a hang, and a fresh worker
started.

Budget: ``IL2PKPD_FUZZ_CASES`` (cases per suite; default small, for CI) and
``IL2PKPD_FUZZ_SEED`` (default 0). ``IL2PKPD_FUZZ_REPORT`` names a JSON file to which a
suite writes its tally and failures (used for the larger run documented in README.md).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def budget(default: int) -> int:
    return int(os.environ.get("IL2PKPD_FUZZ_CASES", default))


def seed() -> int:
    return int(os.environ.get("IL2PKPD_FUZZ_SEED", 0))


class Worker:
    """A worker process answering one case at a time, restarted after a hang."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
                   JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
        self.proc = subprocess.Popen([sys.executable, str(HERE / "_fuzz.py"), "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
        ready = self._read(120.0)
        if ready is None or ready.get("ready") is not True:
            raise RuntimeError(f"fuzz worker did not start: {ready!r}")

    def _read(self, timeout: float) -> dict | None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                line = self.proc.stdout.readline()
                if not line:  # the worker died (a crash of the interpreter itself)
                    return {"outcome": "died", "message": f"worker exited with code {self.proc.wait()}"}
                return json.loads(line)

    def run(self, case: dict, timeout: float) -> dict:
        """Run one case; ``{"outcome": "hang", ...}`` after ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        t0 = time.monotonic()
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        answer = self._read(timeout)
        elapsed = time.monotonic() - t0
        if answer is None:
            self.close()
            self.restarts += 1
            return {"outcome": "hang", "message": f"no answer within {timeout:.0f} s", "elapsed": elapsed}
        if answer.get("outcome") == "died":
            self.close()
            self.restarts += 1
        answer["elapsed"] = elapsed
        return answer

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    f.close()
            self.proc = None


class Tally:
    """Counts of outcomes and the failures found, written to IL2PKPD_FUZZ_REPORT if set."""

    def __init__(self, suite: str, seed_: int):
        self.suite, self.seed = suite, seed_
        self.counts: dict[str, int] = {}
        self.notes: dict[str, int] = {}  # other tallies (not cases), e.g. predictions compared
        self.failures: list[dict] = []
        self.t0 = time.monotonic()
        self.slowest = 0.0

    def add(self, label: str, elapsed: float = 0.0) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1
        self.slowest = max(self.slowest, elapsed)

    def note(self, label: str) -> None:
        self.notes[label] = self.notes.get(label, 0) + 1

    def fail(self, case_id: int, what: str, detail: dict) -> None:
        self.failures.append({"case": case_id, "what": what, **detail})

    def summary(self) -> str:
        n = sum(self.counts.values())
        lines = [f"{self.suite}: {n} cases (seed {self.seed}) in {time.monotonic() - self.t0:.0f} s, slowest case {self.slowest:.1f} s: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) + "".join(f"; {k} {v}" for k, v in sorted(self.notes.items())),
                 f"{len(self.failures)} failures"]
        for f in self.failures[:20]:
            lines.append(f"  case {f['case']}: {f['what']}: {json.dumps({k: v for k, v in f.items() if k not in ('case', 'what')}, default=str)[:1500]}")
        return "\n".join(lines)

    def write(self) -> None:
        path = os.environ.get("IL2PKPD_FUZZ_REPORT")
        if not path:
            return
        p = Path(path)
        old = json.loads(p.read_text()) if p.is_file() else {}
        old[self.suite] = {"seed": self.seed, "cases": sum(self.counts.values()), "counts": self.counts, "notes": self.notes, "seconds": round(time.monotonic() - self.t0, 1),
                           "slowest_case_s": round(self.slowest, 2), "failures": self.failures}
        p.write_text(json.dumps(old, indent=1, default=str))


# --------------------------------------------------------------------------------------
# the worker side (runs il2pkpd; answers one JSON line per case)
# --------------------------------------------------------------------------------------


def _mro(exc: BaseException) -> list[str]:
    return [c.__name__ for c in type(exc).__mro__]


def _dataset_case(case: dict, models: dict) -> dict:
    import numpy as np

    from il2pkpd.io.nonmem import read_nonmem_csv
    from il2pkpd.prediction import predict

    model = models["pk1_oral"]
    data = read_nonmem_csv(case["path"])
    data.problems(model)  # must not raise anything (it lists)
    subjects = data.subject_records(model)
    per_row: dict = {}
    data.subject_values(model, per_row)
    structure = [[s.subject if isinstance(s.subject, (int, str)) else float(s.subject),
                  [[r.time, r.evid, r.amt, r.cmt, r.rate, r.ii, r.addl, r.ss] for r in s]] for s in subjects]
    out = {"outcome": "ok", "structure": structure}
    if case.get("predict"):
        table = predict(model, data)
        out["pred"] = [float(x) for x in table["PRED"].to_numpy(dtype=float)]
        out["status"] = [int(x) for x in np.asarray(table["STATUS"])]
    return out


def _model_case(case: dict, models: dict) -> dict:
    import sympy as sp

    from il2pkpd.io.model_file import load_model

    model = load_model(case["path"])
    sym = model.symbolic
    # a fingerprint: every expression evaluated at one point (each symbol a value from its name)
    point = {}
    for s in set().union(*(e.free_symbols for e in list(sym.rhs) + list(sym.outputs) + list(sym.initial))):
        point[s] = 0.3 + (sum(map(ord, s.name)) % 97) / 41.0
    values = []
    for e in list(sym.rhs) + list(sym.outputs) + list(sym.initial):
        v = complex(sp.N(e.xreplace(point), 15))
        values.append(v.real if v.imag == 0 else float("nan"))
    return {"outcome": "ok", "fingerprint": values, "names": [list(sym.state_names), list(sym.output_names)]}


def worker_main() -> None:
    import warnings

    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by the code under test stays off the protocol
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")  # as tests/conftest.py
    import il2pkpd
    from il2pkpd.errors import Il2pkpdError

    models = {"pk1_oral": il2pkpd.load_model("pk1_oral")}
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        case = json.loads(line)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                answer = (_dataset_case if case["kind"] == "dataset" else _model_case)(case, models)
            except Il2pkpdError as exc:
                answer = {"outcome": "error", "type": type(exc).__name__, "mro": _mro(exc), "message": str(exc),
                          "problems": list(getattr(exc, "problems", []) or [])}
            except Exception as exc:  # noqa: BLE001 - any other exception is what the fuzzer looks for
                answer = {"outcome": "bug", "type": type(exc).__name__, "mro": _mro(exc), "message": str(exc)[:2000],
                          "traceback": traceback.format_exc()[-4000:]}
        answer["warnings"] = [f"{w.category.__name__}: {str(w.message)[:300]}" for w in caught]
        out.write(json.dumps(answer, default=str) + "\n")
        out.flush()


if __name__ == "__main__" and "--worker" in sys.argv:
    worker_main()
