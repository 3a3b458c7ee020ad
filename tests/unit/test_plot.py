"""Figures: il2pkpd never switches the user's matplotlib backend (issue 12, item 8), and the main
job's figure draws every requested output with labelled axes (issue 12, item 9)."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MAIN_OUTPUTS = ("conc", "treg_fold", "treg_pct_cd4", "cd25_fold", "nk_fold", "tbr", "tbr_change", "surv_mi")


def _tiny_simulation(n_draws: int = 1):
    """A small Dataset shaped like a simulate() result (no solve): two outputs, days."""
    import xarray as xr

    t = np.arange(0.0, 120.0, 1.0)
    dims, shape = (("draw", "subject", "time"), (n_draws, 1, t.size)) if n_draws > 1 else (("subject", "time"), (1, t.size))
    ramp = np.broadcast_to(1 + 0.5 * np.exp(-t / 20), shape)
    return xr.Dataset(
        {
            "treg_fold": (dims, ramp, {"unit": "1", "kind": "output", "description": "Treg fold change from baseline"}),
            "tbr": (dims, 2.3 - 0.1 * (ramp - 1), {"unit": "1", "kind": "output", "description": "Index-vessel TBRmax (FDG-PET)"}),
            "conc": (dims, np.zeros(shape), {"unit": "pM", "kind": "output", "description": "Plasma IL-2 concentration"}),
            "surv_mi": (dims, np.exp(-t / 3000) * np.ones(shape), {"unit": "1", "kind": "output", "description": ""}),
        },
        coords={"time": t, "subject": [1]},
        attrs={"model": "tiny", "time_unit": "day"},
    )


# ------------------------------------------------------------------ item 8: the user's backend
BACKEND_SCRIPT = r"""
import json, sys, tempfile, os
import matplotlib
before = matplotlib.get_backend()
import numpy as np, pandas as pd
sys.path.insert(0, os.environ["TESTS_UNIT"])
from test_plot import _tiny_simulation
import il2pkpd.plot as P
ds = _tiny_simulation(5)
gof = pd.DataFrame({"cens": [0, 0, 0], "observation": ["a", "a", "b"], "pred": [1.0, 2.0, 3.0],
                    "ipred": [1.1, 2.1, 2.9], "dv": [1.2, 1.9, 3.1], "cres": [0.1, -0.2, 0.3], "time": [1.0, 2.0, 3.0]})
with tempfile.TemporaryDirectory() as d:
    P.plot_simulation(ds, ["treg_fold", "tbr"], os.path.join(d, "a.png"), regimen="1 MIU sc qd x3")
    file_only_pyplot = "matplotlib.pyplot" in sys.modules
    P.plot_gof(gof, os.path.join(d, "b.png"))
P.plot_simulation(ds, ["treg_fold", "tbr"])
P.plot_gof(gof)
P.plot_arms({"a": ds, "b": ds}, ["treg_fold", "tbr"], doses={"a": [0.0, 7.0]}, break_at=63.0)
print(json.dumps({"before": before, "after": matplotlib.get_backend(), "file_only_pyplot": file_only_pyplot}))
"""


@pytest.mark.parametrize("backend", ["svg", "pdf"])
def test_plot_keeps_the_users_backend(backend, tmp_path):
    """[issue 12 item 8] With MPLBACKEND set to a non-Agg backend, importing il2pkpd.plot and
    drawing (to a file and to the screen) leaves matplotlib.get_backend() as the user set it,
    and writing a figure to a file does not even load pyplot."""
    env = {**__import__("os").environ, "MPLBACKEND": backend, "TESTS_UNIT": str(Path(__file__).parent)}
    res = subprocess.run([sys.executable, "-c", BACKEND_SCRIPT], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["before"] == backend
    assert out["after"] == backend, f"il2pkpd.plot switched the backend from {backend!r} to {out['after']!r}"
    assert out["file_only_pyplot"] is False


def test_plot_never_calls_matplotlib_use(monkeypatch, tmp_path):
    """[issue 12 item 8] No plot builder selects a backend (matplotlib.use is never called)."""
    import matplotlib

    import il2pkpd.plot as P

    calls = []
    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: calls.append((a, k)))
    ds = _tiny_simulation(4)
    fig = P.plot_simulation(ds, ["treg_fold"], tmp_path / "s.png")
    P.plot_arms({"x": ds}, ["tbr"], tmp_path / "a.png")
    assert calls == []
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "a.png").stat().st_size > 0
    assert type(fig).__name__ == "Figure"


# ------------------------------------------------------------------ labels
def test_quantity_label_never_says_1():
    from il2pkpd.plot import quantity_label

    assert quantity_label("treg_fold", "1", "Treg fold change from baseline") == ("Treg", "fold change from baseline")
    assert quantity_label("cd25_fold", "1", "CD25 on Tregs, fold change from baseline") == ("CD25 on Tregs", "fold change from baseline")
    assert quantity_label("surv_mi", "1", "")[1] == "fraction event-free"
    assert quantity_label("tbr_change", "1", "TBR change from baseline")[1] == "change from baseline (dimensionless)"
    assert quantity_label("tbr", "1", "Index-vessel TBRmax (FDG-PET)") == ("Index-vessel TBRmax", "dimensionless")
    assert quantity_label("conc", "pM", "Plasma IL-2 (aldesleukin) concentration") == ("Plasma IL-2 (aldesleukin) concentration", "pM")
    pct = quantity_label("treg_pct_cd4", "%", "Tregs as % of CD4 T cells (conventional CD4 cells held constant, cf. S54)")
    assert pct == ("Tregs as % of CD4 T cells", "%")


def test_plot_simulation_draws_every_requested_output_in_weeks(tmp_path):
    """All requested outputs (not the first 6), titled by description, unit-labelled, time in
    weeks for a 17-week horizon given in hours."""
    from il2pkpd.plot import plot_simulation

    ds = _tiny_simulation()
    ds = ds.assign_coords(time=ds["time"].values * 24.0)
    ds.attrs["time_unit"] = "h"
    names = ["conc", "treg_fold", "tbr", "surv_mi"] * 2  # 8 panels
    fig = plot_simulation(ds, names, tmp_path / "s.png")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 8
    assert [ax.get_ylabel() for ax in axes[:4]] == ["pM", "fold change from baseline", "dimensionless", "fraction event-free"]
    assert axes[3].get_title() == "Free of event 'mi'"
    assert axes[-1].get_xlabel() == "time (weeks)"
    assert max(axes[0].get_xticks()) <= 120  # ticks placed in days (labelled in weeks), not hours


# ------------------------------------------------------------------ item 9: the main job's figure
def test_main_figure_draws_every_requested_output_with_labelled_axes(tmp_path, capsys):
    """[issue 12 item 9] scripts/main_figure.py with tiny settings (3 posterior draws, 3 weeks):
    one panel per requested output, each with a title and a y label that is a unit or a named
    quantity (never "1"), both arms and the dose markers drawn, weeks on the time axis, and the
    figure says it is a model prediction of fits/ivory-published, not trial data."""
    out = tmp_path / "ivory.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = runpy.run_path(str(ROOT / "scripts" / "main_figure.py"))["main"](["--out", str(out), "--draws", "3", "--horizon", "21"])
    assert out.stat().st_size > 10_000
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(panels) == len(MAIN_OUTPUTS)
    for ax in panels:
        assert ax.get_ylabel() and ax.get_ylabel().strip() not in {"1", "", "dimensionless"}, ax.get_title()
        assert ax.get_title() not in MAIN_OUTPUTS, "a panel title is a variable name"
        assert len(ax.collections) >= 2, f"{ax.get_title()}: expected a band per arm"  # 5-95% bands
        assert len([ln for ln in ax.lines if ln.get_marker() == "v"]) == 1  # the dose markers
    titles = [ax.get_title() for ax in panels]
    assert "Free of recurrent myocardial infarction" in titles and "TBRmax change from baseline" in titles
    text = " ".join(t.get_text() for sub in fig.subfigs for t in sub.texts)
    assert "model prediction, calibrated posterior (fits/ivory-published)" in text
    assert "not trial data" in text.lower()
    assert "3 of the posterior's 400 draws" in text
    legend = " ".join(t.get_text() for sub in fig.subfigs for lg in sub.legends for t in lg.get_texts())
    assert "placebo" in legend and "IVORY" in legend and "90%" in legend
    xlabel = fig.subfigs[1].get_supxlabel()
    assert xlabel.startswith("days since first dose")
    assert "wrote" in capsys.readouterr().out


def test_split_time_axis_expands_dosing_phase():
    """The broken time axis maps [0, 63] days onto the left half and the rest of the year onto
    the right half, and round-trips."""
    from il2pkpd.plot import _split_scale

    fwd, inv = _split_scale(63.0, 365.0)
    x = np.array([0.0, 31.5, 63.0, 214.0, 365.0])
    assert np.allclose(fwd(x), [0.0, 0.25, 0.5, 0.75, 1.0])
    assert np.allclose(inv(fwd(x)), x)


def test_dose_response_and_power_curve_draw_the_table_values(tmp_path):
    """The new design figures draw exactly the numbers of the tables they are given (one line
    per interval / per analysis) and refuse a column the table lacks."""
    import pandas as pd

    from il2pkpd.errors import OptionError
    from il2pkpd.plot import plot_dose_response, plot_power_curve

    summary = pd.DataFrame({"regimen": ["0.5 MIU q7d", "1 MIU q7d", "0.5 MIU q3d", "1 MIU q3d"],
                            "cmax(treg_fold) q05": [1.1, 1.3, 1.2, 1.5], "cmax(treg_fold) median": [1.2, 1.5, 1.4, 1.9],
                            "cmax(treg_fold) q95": [1.4, 1.8, 1.7, 2.4], "P(x)": [0.1, 0.4, 0.3, 0.7]})
    fig = plot_dose_response(summary, "cmax(treg_fold)", tmp_path / "er.png", window=(1.75, None))
    lines = {ln.get_label(): ln.get_ydata().tolist() for ln in fig.axes[0].lines}
    assert lines == {"q3d": [1.4, 1.9], "q7d": [1.2, 1.5]} and (tmp_path / "er.png").is_file()
    fig = plot_dose_response(summary, "P(x)", tmp_path / "p.png")
    assert sorted(ln.get_ydata().tolist() for ln in fig.axes[0].lines) == [[0.1, 0.4], [0.3, 0.7]]
    with pytest.raises(OptionError, match="not in the sweep summary"):
        plot_dose_response(summary, "cmax(nk_fold)")
    table = pd.DataFrame({"analysis": ["ancova(tbr, 60)"] * 2, "comparison": ["a vs b"] * 2, "n_total": [80, 40], "quantity": ["assurance"] * 2,
                          "value": [0.8, 0.5], "mc_se": [0.01, 0.02]})
    fig = plot_power_curve(table, tmp_path / "pw.png", target=0.8)
    ax = fig.axes[0]
    assert ax.lines[0].get_ydata().tolist() == [0.5, 0.8] and "assurance" in ax.get_ylabel()
