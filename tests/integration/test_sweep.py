"""Sweeps end to end: the same numbers in memory, on disk, with 0, 1 or 2 Dask workers; resume
after a killed run; refused mixed designs; one-line errors with exit code 2.

Independent checks: a sweep's at(...) metric equals simulate() (another code path) at the
same parameters and random effects; the untreated arm's hazard ratio is exactly 1; flag
regimens reproduce IVORY's dose times (BRIEF S6: 1.5 MIU daily x5 then weekly to week 8).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import il2pkpd
from il2pkpd.design.sweep_design import SweepDesign, regimens_from_flags
from il2pkpd.errors import OptionError
from il2pkpd.io.sweep_store import read_sweep

PK_DESIGN = SweepDesign(
    "pk1_oral", (("100 mg", "100 mg po once"), ("2x50 mg", "50 mg po q12h x2")), horizon=48.0, dense_step=0.5, grid_step=0.5,
    metrics=("cmax(cp)", "auc(cp)", "at(cp, 24)"), targets=("cmax(cp) >= 4",), params=(("v", (15.0, 25.0)),),
    prior=True, draws=5, subjects=3, seed=11, solver="tsit5",
)
CLI = [sys.executable, "-m", "il2pkpd"]


def _env():
    return dict(os.environ, JAX_PLATFORMS="cpu")


def test_in_memory_and_on_disk_sweeps_agree(tmp_path):
    mem = il2pkpd.sweep(PK_DESIGN, chunk_draws=2)
    disk = il2pkpd.sweep(PK_DESIGN, tmp_path / "out", chunk_draws=5)
    pd.testing.assert_frame_equal(mem.table, disk.table)  # chunking does not change a number
    assert len(mem.table) == len(PK_DESIGN.cells()) * 5 * 3 and (mem.table["status"] == 0).all()
    on_disk = pd.read_csv(tmp_path / "out" / "summary.csv")
    np.testing.assert_allclose(on_disk["cmax(cp) median"], disk.summary["cmax(cp) median"], rtol=1e-12)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["cells"]) == 4 and manifest["design"]["model"] == "pk1_oral"
    ds = mem.to_xarray()
    assert ds["cmax(cp)"].sizes == {"cell": 4, "draw": 5, "subject": 3}


def test_a_sweep_metric_equals_simulate_at_the_same_parameters():
    from il2pkpd.design.sweep import CellRunner
    from il2pkpd.io.entry import sweep_population

    model = il2pkpd.load_model("pk1_oral")
    pop, omegas, _ = sweep_population(PK_DESIGN, model)
    runner = CellRunner(PK_DESIGN, model, pop, omegas)
    cell = PK_DESIGN.cells()[1]  # 100 mg, V = 25 L
    out = runner.run(cell, np.arange(5))
    # typical subject of draw 2 (subject 0's random effects are not zero: compare through
    # individual_theta with the same normals)
    from il2pkpd.design.sweep import random_effects
    from il2pkpd.likelihood import individual_theta

    z = random_effects(PK_DESIGN.seed, np.array([2]), 3, len(model.parameters))[0]
    theta_pop = runner.theta_pop[2].copy()
    theta_pop[model.parameter_names.index("v")] = 25.0
    theta = np.asarray(individual_theta(model, theta_pop, runner.omegas, z))
    for s in range(3):
        params = dict(zip(model.parameter_names, theta[s], strict=True))
        ds = il2pkpd.simulate(model, "100 mg po once", np.array([24.0]), params=params, iiv=False, rtol=1e-10, atol=1e-12)
        row = (out["draw"] == 2) & (out["subject"] == s)
        # within the sweep's default rtol (1e-4); a wrong parameter or dose mapping is off by far more
        assert out["at(cp, 24)"][row][0] == pytest.approx(float(ds["cp"].values.ravel()[0]), rel=1e-3)


def test_flag_regimens_reproduce_ivory():
    (label, text), = regimens_from_flags([1.5], "MIU", ["7d"], induction=5, duration="8w")
    assert il2pkpd.parse_regimen(text).dose_times() == il2pkpd.parse_regimen("1.5 MIU sc qd x5 then 1.5 MIU sc qw x7").dose_times()
    assert label == "1.5 MIU q7d"
    (_, text), = regimens_from_flags([1.0], "MIU", ["3d"], duration="4w")
    assert il2pkpd.parse_regimen(text).dose_times() == [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0, 21.0, 24.0, 27.0]


def test_untreated_hazard_ratio_is_one_and_treatment_lowers_tbr():
    design = SweepDesign("ivory", (("IVORY", "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"), ("placebo", "none")),
                         metrics=("hr(mi, 365)", "change(tbr, 60)"), horizon=365.0, subjects=2, solver="rodas4")
    s = il2pkpd.sweep(design).summary.set_index("regimen")
    assert s.loc["placebo", "hr(mi, 365) median"] == pytest.approx(1.0, abs=1e-12)
    assert s.loc["IVORY", "change(tbr, 60) median"] < s.loc["placebo", "change(tbr, 60) median"]


def test_a_changed_design_is_refused_in_the_same_folder(tmp_path):
    il2pkpd.sweep(PK_DESIGN, tmp_path / "out")
    changed = SweepDesign.from_dict(dict(PK_DESIGN.to_dict(), metrics=["cmax(cp)"]))
    with pytest.raises(OptionError, match=r"holds a different sweep \(changed: design keys \['metrics'\]\)"):
        il2pkpd.sweep(changed, tmp_path / "out")
    again = il2pkpd.sweep(PK_DESIGN, tmp_path / "out")
    assert again.chunks_run == 0 and again.chunks_skipped == 4


def test_identical_results_with_0_1_and_2_dask_workers(tmp_path):
    pytest.importorskip("distributed")
    tables = [il2pkpd.sweep(PK_DESIGN, tmp_path / f"w{w}", workers=w, chunk_draws=2).table for w in (0, 1, 2)]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])


IVORY_ARGS = ["sweep", "--dose", "0.5,1,1.5,2", "--interval", "3d,7d", "--induction", "5", "--prior", "--draws", "6",
              "--subjects", "6", "--chunk-draws", "1", "--metrics", "cmax(treg_fold); change(tbr, 60)", "--horizon", "120"]


def test_resume_after_a_killed_sweep_equals_an_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(CLI + IVORY_ARGS + ["--out", str(killed)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(killed.glob("cells/*/*.parquet"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list(killed.glob("cells/*/*.parquet")))
    assert 3 <= n_done < 48, f"the sweep was not interrupted mid-way ({n_done} of 48 chunks)"
    for f in killed.glob("cells/*/*.parquet"):
        pd.read_parquet(f)  # every file that exists is complete
    rerun = subprocess.run(CLI + IVORY_ARGS + ["--out", str(killed)], env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{48 - n_done} chunks run, {n_done} already done" in rerun.stdout
    whole = subprocess.run(CLI + IVORY_ARGS + ["--out", str(tmp_path / "whole")], env=_env(), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    pd.testing.assert_frame_equal(read_sweep(killed), read_sweep(tmp_path / "whole"))
    assert not list(killed.glob("cells/*/.*.tmp"))


@pytest.mark.parametrize(("args", "message"), [
    (["--dose", "abc"], "`--dose` must be comma-separated numbers, got 'abc'"),
    (["--dose", "1", "--interval", "3x"], "interval '3x' must be a positive number with a unit"),
    (["--dose", "1", "--metrics", "peak(conc)"], "unknown kind 'peak'"),
    (["--dose", "1", "--draws", "5"], "needs population uncertainty to draw from"),
    (["--regimen", "IVORY"], "`--regimen` must look like LABEL=TEXT"),
    (["--dose", "1", "--rtol", "2"], "`rtol` must be in (0, 1), got 2.0"),
    ([], "no regimens"),
])
def test_bad_flags_give_one_line_and_exit_code_2(tmp_path, args, message):
    r = subprocess.run(CLI + ["sweep", "--out", str(tmp_path / "o")] + args, env=_env(), capture_output=True, text=True)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert not (tmp_path / "o").exists()  # nothing written for a rejected command


def test_the_example_design_file_and_toml_errors(tmp_path):
    from il2pkpd.design.sweep_design import design_from_toml
    from il2pkpd.errors import DataFormatError

    root = Path(__file__).resolve().parents[2]
    d = design_from_toml(root / "examples" / "sweep" / "ivory_alternatives.toml")
    assert [label for label, _ in d.regimens][0] == "IVORY 1.5 MIU" and ("placebo", None) in d.regimens
    assert len(d.cells()) == 6  # the placebo arm serves the hazard ratio: no extra untreated arm
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "ivory"\ndoses = 3\n[regimens]\na = "1 MIU sc once"\n')
    with pytest.raises(DataFormatError, match=r"unknown keys \['doses'\]"):
        design_from_toml(bad)


def test_latin_hypercube_has_one_point_per_stratum():
    d = SweepDesign("pk1_oral", (("a", "100 mg po once"),), metrics=("cmax(cp)",), lhs=(("cl", 0.5, 2.0), ("v", 10.0, 30.0)), lhs_n=8, seed=3)
    pts = np.array([[v for _, v in p] for p in d.parameter_points()])
    assert pts.shape == (8, 2)
    for j, (lo, hi) in enumerate(((0.5, 2.0), (10.0, 30.0))):
        strata = np.floor((pts[:, j] - lo) / (hi - lo) * 8).astype(int)
        assert sorted(strata) == list(range(8))
    assert d.parameter_points() == d.parameter_points()  # seeded: the same cells every run


def test_cli_flags_design_prints_the_table_and_draws_the_heatmap(tmp_path):
    out = tmp_path / "grid"
    r = subprocess.run(CLI + ["sweep", "--dose", "1,1.5", "--interval", "3d,7d", "--induction", "5", "--horizon", "70", "--workers", "0",
                              "--metrics", "cmax(treg_fold)", "--heatmap", "cmax(treg_fold) median", "--rtol", "1e-6", "--out", str(out)],
                       env=dict(_env(), COLUMNS="200"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "SIMULATED" in r.stdout and "1.5 MIU q7d" in r.stdout and "4 chunks run, 0 already done" in r.stdout
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "manifest.json").read_text())["design"]["rtol"] == 1e-6  # --rtol reaches the solver settings
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["regimen"]) == ["1 MIU q3d", "1 MIU q7d", "1.5 MIU q3d", "1.5 MIU q7d"]
    # more frequent maintenance gives the higher Treg peak at the same dose (the model's monotone response)
    s = summary.set_index("regimen")["cmax(treg_fold) median"]
    assert s["1.5 MIU q3d"] > s["1.5 MIU q7d"] and s["1.5 MIU q7d"] > s["1 MIU q7d"]


def test_posterior_draws_come_from_the_stored_fit_thinned_evenly():
    from il2pkpd.io.fits import fits_search_path, load_fit
    from il2pkpd.io.entry import sweep_population

    if not any((p / "ivory-published" / "fit.json").is_file() for p in fits_search_path()):
        pytest.skip("fits/ivory-published is not stored")
    model = il2pkpd.load_model("ivory")
    design = SweepDesign("ivory", (("IVORY", "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"),), metrics=("at(treg_fold, 5)",),
                         horizon=10.0, fit="ivory-published", draws=4, solver="rodas4")
    pop, _, fit_hash = sweep_population(design, model)
    post = load_fit("ivory-published", model=model).population_draws()
    total = len(post["ec50"])
    pick = np.linspace(0, total - 1, 4).round().astype(int)
    np.testing.assert_array_equal(pop["ec50"], post["ec50"][pick])
    assert len(fit_hash) == 64
    table = il2pkpd.sweep(design).table
    assert table["at(treg_fold, 5)"].nunique() == 4  # posterior uncertainty reaches the metric


def test_a_running_dask_scheduler_can_be_given_by_address(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        via_address = il2pkpd.sweep(PK_DESIGN, tmp_path / "a", scheduler=cluster.scheduler_address, chunk_draws=3).table
    pd.testing.assert_frame_equal(via_address, il2pkpd.sweep(PK_DESIGN, chunk_draws=3).table)


def test_workers_start_while_another_cluster_holds_the_dashboard_port():
    """Dask's default HTTP port (8787) taken, as by a second sweep or power run at once: the
    cluster runs without the port-moved warning (the suite makes warnings errors)."""
    import operator
    import socket

    pytest.importorskip("distributed")
    from il2pkpd.design.sweep_run import run_on_dask

    holder = socket.socket()
    try:
        holder.bind(("", 8787))
        holder.listen()
    except OSError:  # something else holds it already: the situation under test
        pass
    try:
        assert sorted(run_on_dask(operator.add, [(1, 2), (3, 4)], 1, None, lambda k: None)) == [3, 7]
    finally:
        holder.close()


@pytest.mark.parametrize("ka, lag", [(1.0, 0.3), (3.0, 0.3), (8.0, 0.7)])
def test_cmax_and_tmax_match_the_closed_form_when_the_peak_follows_a_lag(ka, lag):
    """One-compartment oral dose with an absorption lag (pk1_oral, typical subject): the
    sweep's cmax/tmax on its default output grid against the closed form, Cmax = D ka /
    (V (ka - k)) (exp(-k tau) - exp(-ka tau)) at tau = ln(ka/k) / (ka - k) after the lag.
    The lag puts a kink inside the first hour after the dose, where the parabola may not
    refine the peak: the grid itself must sample the peak densely (a grid of 1, 2, 3 ... h
    after each dose was off by 0.4% to several % here)."""
    from il2pkpd.design.sweep import CellRunner
    from il2pkpd.io.entry import sweep_population

    design = SweepDesign("pk1_oral", (("100 mg", "100 mg po once"),), horizon=24.0, metrics=("cmax(cp)", "tmax(cp)"),
                         params=(("ka", (ka,)), ("alag1", (lag,))), draws=1, subjects=0, solver="rodas4", rtol=1e-8, atol=1e-10)
    model = il2pkpd.load_model("pk1_oral")
    pop, omegas, _ = sweep_population(design, model)
    runner = CellRunner(design, model, pop, omegas)
    out = runner.run(design.cells()[0], np.arange(1))
    cl, v = (model.parameters[model.parameter_names.index(n)].value for n in ("cl", "v"))
    k = cl / v
    tau = np.log(ka / k) / (ka - k)
    cmax = 100.0 * ka / (v * (ka - k)) * (np.exp(-k * tau) - np.exp(-ka * tau))
    assert out["cmax(cp)"][0] == pytest.approx(cmax, rel=3e-3)
    assert out["tmax(cp)"][0] == pytest.approx(lag + tau, abs=0.1)


def test_a_folder_swept_on_another_output_grid_is_refused(tmp_path, monkeypatch):
    """The grid's times after each dose are code, not design: a folder written with other
    ones (an older il2pkpd) holds other numbers and must not be resumed into."""
    from il2pkpd.design import sweep_run

    monkeypatch.setattr(sweep_run, "DEFAULT_DOSE_OFFSETS", (1 / 24, 2 / 24))
    il2pkpd.sweep(PK_DESIGN, tmp_path / "out")
    monkeypatch.undo()
    with pytest.raises(OptionError, match=r"holds a different sweep \(changed: the output grid's times after each dose"):
        il2pkpd.sweep(PK_DESIGN, tmp_path / "out")
