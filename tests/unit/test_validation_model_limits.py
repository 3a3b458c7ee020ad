"""Model files that used to hang, crash or print 10,000 characters (issue 12, item 7).

Each check runs in a child process under a time limit: ``10**10**10`` made sympy compute a
ten-billion-digit integer inside C code, where no signal reaches Python, so only a
separate process can be stopped. Every case must end, within the limit, in a one-line
:class:`~il2pkpd.errors.ModelSpecError` naming the key.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

MAX_DEPTH, MAX_LENGTH = 100, 10_000  # il2pkpd.model._expr's documented limits (checked below)

MODEL = """
[model]
name = "one"
time_unit = "h"

[parameters.ka]
value = 1.0
unit = "1/h"

[parameters.v]
value = 10.0
unit = "L"

[states.depot]
unit = "mg"
dose = true

[states.central]
unit = "mg"

[odes]
depot = "-ka*depot"
central = {central}

[outputs.cp]
expr = "central/v"
unit = "mg/L"
"""

RUNNER = textwrap.dedent("""
    import json, sys, time
    from il2pkpd import load_model
    from il2pkpd.errors import Il2pkpdError
    out = []
    for path in sys.argv[1:]:
        t0 = time.monotonic()
        try:
            load_model(path)
            out.append({"ok": True, "seconds": time.monotonic() - t0})
        except Il2pkpdError as exc:
            out.append({"ok": False, "type": type(exc).__name__, "message": str(exc), "seconds": time.monotonic() - t0})
    print(json.dumps(out))
""")


def load_in_child(tmp_path, expressions: list[str], timeout: float = 120) -> list[dict]:
    """Load one model per ``central`` ODE expression in a child process; fail (not hang)
    past ``timeout`` seconds."""
    paths = []
    for i, e in enumerate(expressions):
        p = tmp_path / f"m{i}.toml"
        p.write_text(MODEL.replace("{central}", json.dumps(e)))
        paths.append(str(p))
    try:
        res = subprocess.run([sys.executable, "-c", RUNNER, *paths], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"load_model did not finish within {timeout} s (hang) on {[e[:40] for e in expressions]}")
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_huge_constant_powers_fail_fast_naming_the_key(tmp_path):
    """Issue 12: `10**10**10` hung load_model while sympy evaluated it exactly."""
    exprs = ["ka*depot - 10**10**10*central*ka", "ka*depot*10^10^10", "pow(10, 10**10)*ka*depot", "2**2**2**2**2*ka*depot",
             "10**-400*ka*depot"]
    for e, r in zip(exprs, load_in_child(tmp_path, exprs)):
        assert not r["ok"] and r["type"] == "ModelSpecError", (e, r)
        assert r["seconds"] < 5, (e, r)
        msg = r["message"]
        assert "\n" not in msg and "`odes.central` (line 23)" in msg and "64-bit float range" in msg, msg


@pytest.mark.parametrize("shape", ["paren", "neg", "exp", "pow", "sum"])
def test_a_5000_deep_expression_is_refused_in_a_short_message(tmp_path, shape):
    """Issue 12: a 5,000-deep expression gave a 10,000-character message (or a RecursionError)."""
    n = 5000
    e = {"paren": "(" * n + "ka*depot" + ")" * n, "neg": "-" * n + "ka*depot", "exp": "exp(" * n + "ka" + ")" * n + "*depot",
         "pow": "^".join(["ka"] * n) + "*depot", "sum": "+".join(["ka*depot"] * n)}[shape]
    (r,) = load_in_child(tmp_path, [e])
    assert not r["ok"] and r["type"] == "ModelSpecError", r
    msg = r["message"]
    body = msg.split(".toml: ", 1)[-1]  # without the file's path
    assert "\n" not in msg and len(body) < 350 and "`odes.central`" in msg, msg
    assert f"{MAX_DEPTH} levels" in msg or f"at most {MAX_LENGTH:,} characters" in msg, msg


def test_the_depth_limit_is_exact_and_a_long_sum_is_one_level(tmp_path):
    from il2pkpd.model import _expr

    assert (_expr.MAX_DEPTH, _expr.MAX_LENGTH) == (MAX_DEPTH, MAX_LENGTH)
    at_limit = "-" * (MAX_DEPTH - 2) + "ka*depot"   # unary minus x98, the product, the names: 100 levels
    beyond = "-" * (MAX_DEPTH - 1) + "ka*depot"
    long_sum = "(" + "+".join(["ka*depot"] * 1000) + ")/1000"
    ok, refused, summed = load_in_child(tmp_path, [at_limit, beyond, long_sum])
    assert ok["ok"] and summed["ok"], (ok, summed)
    assert not refused["ok"] and f"must be nested at most {MAX_DEPTH} levels deep, got {MAX_DEPTH + 1}" in refused["message"]
