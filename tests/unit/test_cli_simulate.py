"""`il2pkpd simulate` (issue 12): printed peaks and troughs are exact, not read off the
--step grid; unwritable outputs fail before the work; --fit/--draws, --data, --covariate,
--solver/--rtol/--atol/--max-steps; hints name CLI flags; an honest timing footer."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest


def run(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "il2pkpd", *args], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def row(stdout: str, output: str) -> list[str]:
    """The cells of the summary table's row for ``output``."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] == output:
            return cells
    raise AssertionError(f"no row {output!r} in:\n{stdout}")


def oral_peak(ka=1.0, ke=0.05, v=20.0, dose=100.0):
    """pk1_oral.toml's typical subject (ka 1/h, CL 1 L/h, V 20 L): closed-form tmax and Cmax."""
    tmax = np.log(ka / ke) / (ka - ke)
    return dose / v * ka / (ka - ke) * (np.exp(-ke * tmax) - np.exp(-ka * tmax)), tmax


def one_line_error(res):
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def run_here(*args, code: int = 0):
    """The CLI in this process (typer's runner): its solver programs are then compiled once
    for the CLI and the Python reference together. Returns stdout (or stderr for ``code`` 2)."""
    from typer.testing import CliRunner

    from il2pkpd.cli import app

    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, res.output
    if code == 2:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        return lines[0]
    return res.stdout


def test_printed_peak_is_exact_with_a_coarse_step():
    # the 6-hour grid's largest value is 3.886 mg/L at 6 h; the peak is 4.271 mg/L at 3.153 h
    res = run("simulate", "--model", "pk1_oral", "--regimen", "100 mg po once", "--horizon", "24", "--step", "6")
    assert res.returncode == 0, res.stderr
    cmax, tmax = oral_peak()
    cells = row(res.stdout, "cp")  # output, unit, at t=0, max, time of max, min, time of min, at end
    assert cells[3] == f"{cmax:.4g}" and cells[4] == f"{tmax:.4g}"
    assert cells[5] == "0" and cells[6] == "0"
    assert "located by the solver" in res.stdout


def test_data_flag_simulates_a_dataset_and_prints_its_exact_peak(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("ID,TIME,EVID,AMT,CMT,DV\n1,0,1,100,1,.\n1,4,0,0,2,3.9\n1,24,0,0,2,1.5\n")
    res = run("simulate", "--model", "pk1_oral", "--data", str(data), "--step", "8")
    assert res.returncode == 0, res.stderr
    cmax, tmax = oral_peak()
    cells = row(res.stdout, "cp")
    assert cells[3] == f"{cmax:.4g}" and cells[4] == f"{tmax:.4g}"
    assert cells[7] == f"{100 / 20 / 0.95 * (np.exp(-0.05 * 24) - np.exp(-24)):.4g}"  # the grid ends at the last record, 24 h
    assert f"dataset {data}" in " ".join(res.stdout.split())  # the title may wrap a long path
    assert "--regimen or --data" in run_here("simulate", "--model", "pk1_oral", "--data", str(data), "--regimen", "100 mg po once", code=2)


def test_out_into_a_folder_that_cannot_be_written_fails_before_the_simulation(tmp_path, monkeypatch):
    import il2pkpd.simulation

    def never(*a, **k):
        raise AssertionError("simulated before checking the output path")

    monkeypatch.setattr(il2pkpd.simulation, "simulate", never)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    err = run_here("simulate", "--model", "pk1_oral", "--regimen", "100 mg po once", "--horizon", "2", "--out", str(blocker / "s.csv"), code=2)
    assert "`--out`" in err and "is a file, not a folder" in err and str(blocker) in err
    err = run_here("simulate", "--model", "pk1_oral", "--horizon", "2", "--plot", str(tmp_path / "fig.txt"), code=2)
    assert "`--plot` must end in .png" in err and "fig.txt" in err
    assert "is a folder" in run_here("simulate", "--model", "pk1_oral", "--horizon", "2", "--out", str(tmp_path), code=2)
    res = run("simulate", "--model", "pk1_oral", "--horizon", "2", "--out", str(blocker / "s.nc"))  # the real command
    assert "is a file, not a folder" in one_line_error(res) and res.stdout == ""


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_out_without_write_permission_fails_before_the_simulation(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        err = one_line_error(run("simulate", "--model", "pk1_oral", "--horizon", "2", "--out", str(locked / "s.csv")))
        assert "no write permission" in err
    finally:
        locked.chmod(0o700)


def test_solver_failure_hint_names_cli_flags_not_python_keywords():
    res = run("simulate", "--model", "pk1_oral", "--regimen", "100 mg po once", "--horizon", "48", "--param", "ka=50", "--max-steps", "2")
    err = one_line_error(res)
    assert "maximum number of solver steps" in err and "--solver rodas4" in err and "--max-steps" in err
    assert "throw=False" not in err and "solver='rodas4'" not in err


def test_bad_solver_options_fail_in_one_line():
    assert "'rk4'" in one_line_error(run("simulate", "--model", "pk1_oral", "--horizon", "2", "--solver", "rk4"))
    assert "`rtol` must be in (0, 1), got 0.0" in one_line_error(run("simulate", "--model", "pk1_oral", "--horizon", "2", "--rtol", "0"))


def test_covariate_flag_converts_a_per_m2_dose():
    # metamorphic: 1 MIU/m2 at bsa 1.5 m2 is 1.5 MIU (the Python API gives the reference)
    import il2pkpd

    out = run_here("simulate", "--model", "ivory", "--regimen", "1 MIU/m2 sc once", "--covariate", "bsa=1.5", "--horizon", "3",
                   "--outputs", "conc")
    ref = il2pkpd.simulate("ivory", "1.5 MIU sc once", np.arange(0.0, 3.5, 1.0), extrema=["conc"])
    assert row(out, "conc")[3:5] == [f"{float(ref.conc_max[0]):.4g}", f"{float(ref.conc_tmax[0]):.4g}"]


def test_negative_bsa_blames_the_covariate():
    err = one_line_error(run("simulate", "--model", "ivory", "--regimen", "1 MIU/m2 sc once", "--covariate", "bsa=-1.7", "--horizon", "3"))
    assert "covariate `bsa` must be a finite number > 0 (m2)" in err and "-1.7" in err and "AMT" not in err
    err = one_line_error(run("simulate", "--model", "ivory", "--covariate", "bsa=big", "--horizon", "3"))
    assert "`--covariate bsa` must be a number, got 'big'" in err


def test_fit_draws_give_the_posterior_median_of_each_draws_peak():
    import il2pkpd
    from il2pkpd.io.fits import load_fit

    out = run_here("simulate", "--model", "ivory", "--fit", "ivory-published", "--draws", "3", "--regimen", "1.5 MIU sc once",
                   "--horizon", "2", "--outputs", "conc")
    assert "3 posterior draws of ivory-published" in out
    model = il2pkpd.load_model("ivory")
    post = load_fit("ivory-published").population_draws()
    pick = np.unique(np.linspace(0, len(post["cl"]) - 1, 3).round().astype(int))  # evenly spaced, as documented
    params = {k: v[pick] for k, v in post.items() if k in model.parameter_names or k[6:] in model.parameter_names}
    ref = il2pkpd.simulate(model, "1.5 MIU sc once", np.arange(0.0, 2.5, 1.0), params=params, extrema=["conc"])
    assert ref["conc_max"].dims == ("draw", "subject")
    assert row(out, "conc")[3] == f"{float(np.median(ref['conc_max'].values)):.4g}"


def test_fit_flag_errors_are_one_line():
    assert "needs --fit" in run_here("simulate", "--model", "ivory", "--draws", "3", "--horizon", "2", code=2)
    err = run_here("simulate", "--model", "pk1_oral", "--fit", "ivory-published", "--horizon", "2", code=2)
    assert "fit of model 'ivory', not of 'pk1_oral'" in err
    err = run_here("simulate", "--model", "ivory", "--fit", "ivory-published", "--draws", "100000", "--horizon", "2", code=2)
    assert "`--draws` must be between 1 and the fit's 400 posterior draws, got 100000" in err


def test_compile_meter_tells_a_compilation_from_a_cache_load(monkeypatch):
    import jax
    import jax.numpy as jnp

    from il2pkpd.cli import _CompileMeter
    from il2pkpd.solve._config import compilation_cache_dir

    assert compilation_cache_dir()  # the persistent cache il2pkpd configures
    _CompileMeter.install()
    for k, v in {"fresh": 0, "fresh_s": 0.0, "loaded": 0, "_hit": False}.items():
        monkeypatch.setattr(_CompileMeter, k, v)
    salt = float(np.random.default_rng().random())  # a program never compiled before

    def f(x):
        return jnp.sin(x) * salt

    jax.jit(f)(1.0)
    assert _CompileMeter.fresh >= 1 and "compiling" in _CompileMeter.footer(2.0)
    monkeypatch.setattr(_CompileMeter, "fresh", 0)
    monkeypatch.setattr(_CompileMeter, "fresh_s", 0.0)
    jax.clear_caches()
    jax.jit(f)(1.0)  # the same program again: loaded from the persistent cache
    assert _CompileMeter.fresh == 0 and _CompileMeter.loaded >= 1
    assert _CompileMeter.footer(2.0) == "2.00 s wall time (compiled programs loaded from the cache)"


def test_footer_never_claims_a_compilation_on_a_warm_cache():
    args = ("simulate", "--model", "pk1_oral", "--regimen", "100 mg po once", "--horizon", "24", "--step", "6")
    run(*args)  # warms the cache (or finds it warm)
    warm = run(*args)
    assert warm.returncode == 0, warm.stderr
    assert "compiling" not in warm.stdout and "cold cache" not in warm.stdout
    assert warm.stdout.splitlines()[-1].endswith("s wall time (compiled programs loaded from the cache)")


def test_a_dataset_whose_values_change_between_records_is_summarised_on_its_records(tmp_path):
    # F1 differs between the two doses: the dataset is simulated at its own records, so its
    # extrema are over those records, and the summary says so
    data = tmp_path / "f1.csv"
    data.write_text("ID,TIME,EVID,AMT,CMT,DV,F1\n1,0,1,100,1,.,1\n1,1,0,0,2,2,1\n1,3,0,0,2,4,1\n1,12,1,100,1,.,0.5\n1,24,0,0,2,2,0.5\n")
    out = run_here("simulate", "--model", "pk1_oral", "--data", str(data), "--out", str(tmp_path / "o.csv"))
    assert "on the dataset's records only (values change between records)" in out

    def conc(t):  # superposition of the closed form, F 1 then 0.5 (pk1_oral: ka 1/h, ke 0.05/h, V 20 L)
        return sum(f * 100 / 20 / 0.95 * (np.exp(-0.05 * (t - s)) - np.exp(-(t - s))) for s, f in ((0, 1.0), (12, 0.5)) if t >= s)

    cells = row(out, "cp")
    assert "at first record" in out and "at last record" in out
    assert cells[3] == f"{conc(3.0):.4g}" and cells[4] == "3" and cells[7] == f"{conc(24.0):.4g}"
    assert "`--horizon` cannot be used" in run_here("simulate", "--model", "pk1_oral", "--data", str(data), "--horizon", "24", code=2)


def test_unknown_names_are_blamed_on_the_flag_not_on_a_python_keyword():
    err = run_here("simulate", "--model", "pk1_oral", "--horizon", "2", "--param", "clearance=3", code=2)
    assert err.startswith("error: `--param clearance` is not a parameter or covariate of model 'pk1_oral'") and "`params`" not in err
    err = run_here("simulate", "--model", "ivory", "--horizon", "2", "--covariate", "cl=3", code=2)
    assert err.startswith("error: `--covariate cl` is not a covariate of model 'ivory'")


def test_plot_draws_every_requested_output_with_dose_markers(tmp_path, monkeypatch):
    """`--plot` drew only the first six of the requested outputs (issue 12, item 9)."""
    from typer.testing import CliRunner

    import il2pkpd.plot
    from il2pkpd.cli import app

    seen = {}
    monkeypatch.setattr(il2pkpd.plot, "plot_simulation", lambda ds, **kw: seen.update(kw))
    wanted = "conc,treg_fold,treg_pct_cd4,cd25_fold,nk_fold,tbr,tbr_change,surv_mi"
    res = CliRunner().invoke(app, ["simulate", "--model", "ivory", "--horizon", "14", "--outputs", wanted, "--plot", str(tmp_path / "f.png")])
    assert res.exit_code == 0, res.output
    assert list(seen["outputs"]) == wanted.split(",")
    assert seen["regimen"] == "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7" and seen["model"].name == "ivory"
