"""The command line: outputs, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "il2pkpd", *args], capture_output=True, text=True, timeout=timeout)


def test_simulate_writes_csv_and_png(tmp_path):
    out, png = tmp_path / "s.csv", tmp_path / "s.png"
    res = run("simulate", "--model", "pk1_oral", "--regimen", "100 mg po q12h x2", "--horizon", "24", "--out", str(out), "--plot", str(png))
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(out)
    assert list(table.columns[:3]) == ["subject", "time [h]", "cp [mg/L]"]
    assert len(table) == 25
    assert png.stat().st_size > 1000
    assert "cp" in res.stdout


def test_bad_regimen_is_one_line_exit_2():
    res = run("simulate", "--model", "pk1_oral", "--regimen", "-5 mg po once", "--horizon", "2")
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error:") and "-5" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_bad_data_is_one_line_exit_2(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("ID,TIME,EVID,AMT,CMT\n1,5,1,100,1\n1,2,0,0,2\n")
    res = run("predict", "--model", "pk1_oral", "--data", str(data), "--out", str(tmp_path / "o.csv"))
    assert res.returncode == 2
    assert "row 2" in res.stderr and "2.0 after 5.0" in res.stderr
    assert not (tmp_path / "o.csv").exists()


def test_bad_param_flag_is_exit_2(tmp_path):
    res = run("simulate", "--model", "pk1_oral", "--param", "CL", "--horizon", "2")
    assert res.returncode == 2 and "NAME=VALUE" in res.stderr


def test_unknown_model_is_exit_2():
    res = run("simulate", "--model", "nope", "--horizon", "2")
    assert res.returncode == 2 and "nope" in res.stderr


def test_models_lists_shipped_models():
    res = run("models")
    assert res.returncode == 0
    for name in ("ivory", "pk1_oral", "pk2_oral", "warfarin"):
        assert name in res.stdout


def test_datasets_lists_the_published_evidence():
    res = run("datasets")
    assert res.returncode == 0
    assert "ivory_tbr_diff_index" in res.stdout and "S12" in res.stdout


def test_solver_defaults_of_every_command_are_the_python_defaults():
    """Issue 13: each use's solver settings are defined once (il2pkpd.solver_options); the
    CLI's option defaults, the Python functions' and the sweep design's are those."""
    import dataclasses
    import inspect

    from il2pkpd import cli
    from il2pkpd.design.sweep_design import SweepDesign
    from il2pkpd.likelihood import JointLoglik
    from il2pkpd.simulation import simulate
    from il2pkpd.solver_options import DEFAULT_SOLVER_OPTIONS

    def settings(params, names=("solver", "rtol", "atol")):
        return tuple(params[n].default for n in names)

    def expected(use, names=("solver", "rtol", "atol")):
        return tuple(getattr(DEFAULT_SOLVER_OPTIONS[use], n) for n in names)

    sim_names = ("solver", "rtol", "atol", "max_steps")
    assert settings(inspect.signature(simulate).parameters, sim_names) == expected("simulate", sim_names)
    assert settings(inspect.signature(cli.simulate).parameters, sim_names) == expected("simulate", sim_names)
    assert settings(inspect.signature(cli.predict).parameters) == expected("simulate")
    # fit's flags default to None: the method's defaults ("fit" for NUTS, "estimate" for FOCE-I ...)
    assert settings(inspect.signature(cli.fit).parameters) == (None, None, None)
    # the sweep's CLI flags default to None: the design (file or SweepDesign) decides
    assert settings(inspect.signature(cli.sweep).parameters) == (None, None, None)
    fields = {f.name: f.default for f in dataclasses.fields(SweepDesign)}
    assert (fields["solver"], fields["rtol"], fields["atol"]) == expected("sweep")
    assert {f.name: f.default for f in dataclasses.fields(JointLoglik)}["options"] == DEFAULT_SOLVER_OPTIONS["simulate"]


def test_help_keeps_text_in_square_brackets():
    """Help strings are plain text: a "[default: ...]" written in one is printed, not read as
    markup and dropped."""
    res = run("optimize", "--help")
    assert res.returncode == 0 and "[default: min(100, all)]" in " ".join(res.stdout.split())


def test_output_paths_that_cannot_be_written_are_refused_before_work(tmp_path):
    """/proc refuses new files even to root, whatever its permission bits say."""
    res = run("optimize", "--model", "pk1_oral", "--horizon", "24", "--space", "dose=10..500 mg", "--objective", "minimise total_dose",
              "--constraint", "E(cmax(cp)) >= 5", "--out", "/proc/il2pkpd-x.json")
    assert res.returncode == 2 and "cannot be written" in res.stderr and "Traceback" not in res.stderr, res.stderr
    a_file = tmp_path / "f"
    a_file.write_text("x")
    res = run("sweep", "--model", "pk1_oral", "--dose", "100 mg", "--horizon", "24", "--out", str(a_file))
    assert res.returncode == 2 and "is a file" in res.stderr and "Traceback" not in res.stderr, res.stderr
