"""Command line: ``il2pkpd simulate``, ``predict``, ``fit``, ``sweep``, ``optimize``, ``power``, ``models``, ``datasets``.

Thin: parse -> call -> write -> exit code. An :class:`~il2pkpd.errors.Il2pkpdError` prints
``error: <message>`` and exits with 2; anything else is a bug and shows its traceback
(exit 1). ``--debug`` always shows tracebacks.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import DataFormatError, Il2pkpdError, OptionError
from .solver_options import DEFAULT_SOLVER_OPTIONS, SOLVER_NAMES

# the library's solver defaults per use (one place: il2pkpd.solver_options)
_SIM, _FIT, _SWEEP, _EST, _OPT = (DEFAULT_SOLVER_OPTIONS[use] for use in ("simulate", "fit", "sweep", "estimate", "optimize"))

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, help="il2pkpd: PK/PD of low-dose IL-2 (aldesleukin), solved with JAX.")
log = logging.getLogger("il2pkpd")
_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for every error.")] = False) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _handle_errors(command: Callable) -> Callable:
    """Turn an Il2pkpdError into `error: <message>` on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Il2pkpdError as exc:
            if _state["debug"]:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _parse_params(items: list[str] | None, allow_columns: bool) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for item in items or []:
        if "=" not in item:
            raise DataFormatError(f"`--param` must look like NAME=VALUE, got {item!r}")
        key, _, val = item.partition("=")
        key, val = key.strip(), val.strip()
        try:
            out[key] = float(val)
        except ValueError:
            if not allow_columns:
                raise DataFormatError(f"`--param {key}` must be a number, got {val!r}") from None
            out[key] = val
    return out


@app.command()
@_handle_errors
def models() -> None:
    """List the models shipped with il2pkpd."""
    from rich.console import Console
    from rich.table import Table

    from .io.model_file import available_models, load_model

    table = Table("model", "states", "parameters", "time unit", "description")
    for name in available_models():
        m = load_model(name)
        table.add_row(name, str(len(m.states)), str(len(m.parameters)), m.time_unit, m.description)
    Console().print(table)


@app.command()
@_handle_errors
def datasets() -> None:
    """List the published-evidence set (every number with its BRIEF source id and tag)."""
    from rich.console import Console
    from rich.table import Table

    from .datasets import published

    table = Table("id", "study", "endpoint", "statistic", "value", "CI/range", "unit", "source", "tag",
                  title="published evidence (R = reported, I = inferred)")
    for row in published().itertuples():
        ci = f"{row.lower:g} to {row.upper:g}" if row.lower == row.lower and row.upper == row.upper else ""
        value = f"{row.value:g}" if row.value == row.value else ""
        table.add_row(row.id, row.study, row.endpoint, row.statistic, value, ci, str(row.unit), row.source, row.tag)
    Console(width=200).print(table)


_PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".tif", ".tiff", ".eps", ".ps", ".webp")


def _check_writable(path: Path, flag: str, suffixes: tuple[str, ...]) -> None:
    """Refuse an output path that cannot be written, before any work is done: a wrong suffix,
    an existing folder of that name, a parent that is a file, or a folder without write
    permission (the nearest existing one, since missing folders are created)."""
    if path.is_dir():
        raise DataFormatError(f"`{flag}` {str(path)!r} is a folder; give a file name, e.g. {str(path / ('out' + suffixes[0]))!r}")
    if path.suffix.lower() not in suffixes:
        allowed = ", ".join(suffixes[:-1]) + " or " + suffixes[-1] if len(suffixes) > 1 else suffixes[0]
        raise DataFormatError(f"`{flag}` must end in {allowed}, got {str(path)!r}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataFormatError(f"`{flag}` {str(path)!r} cannot be written: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise DataFormatError(f"`{flag}` {str(path)!r} cannot be written: no write permission in {str(parent)!r}")
    _probe_write(parent, path, flag)


def _probe_write(folder: Path, path: Path, flag: str) -> None:
    """Create and remove a file in ``folder``: permission bits do not tell everything (a
    read-only or virtual file system, such as /proc, refuses even root)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DataFormatError(f"`{flag}` {str(path)!r} cannot be written: {exc.strerror or exc} in {str(folder)!r}") from None


def _name_the_flag(m, items: list[tuple[str, str, str]]) -> None:
    """Parse each flag's text as the library will, so that an error names the flag the user
    typed: ``(flag, text, kind)`` with kind ``objective``, ``constraint``, ``space`` or
    ``analysis``."""
    from .design.analyses import parse_analysis
    from .design.criteria import parse_constraint, parse_objective
    from .design.regimen_space import parse_space

    parsers = {"objective": lambda t: parse_objective(t, m), "constraint": lambda t: parse_constraint(t, m), "space": parse_space,
               "analysis": lambda t: parse_analysis(t, m)}
    for flag, text, kind in items:
        try:
            parsers[kind](text)
        except Il2pkpdError as exc:
            raise DataFormatError(f"`{flag}`: {exc}") from None


def _check_folder_writable(path: Path, flag: str) -> None:
    """Refuse an output folder that cannot be written, before any work is done: an existing
    file of that name, a parent that is a file, or a folder that refuses a new file."""
    if path.exists() and not path.is_dir():
        raise DataFormatError(f"`{flag}` {str(path)!r} is a file; give a folder (it is created if missing)")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataFormatError(f"`{flag}` {str(path)!r} cannot be created: {str(parent)!r} is a file, not a folder")
    _probe_write(parent, path, flag)


class _CompileMeter:
    """Seconds JAX spent compiling programs that were not in the persistent compile cache,
    counted from JAX's monitoring events (a cache hit is a load, not a compilation)."""

    _installed = False
    fresh_s = 0.0
    fresh = 0
    loaded = 0
    _hit = False

    @classmethod
    def install(cls) -> None:
        if cls._installed:
            return
        import jax.monitoring as mon

        def on_event(event: str, **kwargs) -> None:
            if event == "/jax/compilation_cache/cache_hits":
                cls._hit = True

        def on_duration(event: str, duration: float, **kwargs) -> None:
            if event == "/jax/core/compile/backend_compile_duration":
                if cls._hit:
                    cls.loaded += 1
                else:
                    cls.fresh += 1
                    cls.fresh_s += duration
                cls._hit = False

        mon.register_event_listener(on_event)
        mon.register_event_duration_secs_listener(on_duration)
        cls._installed = True

    @classmethod
    def footer(cls, elapsed: float) -> str:
        if cls.fresh:
            from .solve import compilation_cache_dir

            why = "not yet in the compile cache (a rerun loads them)" if compilation_cache_dir() else "(the compile cache is off)"
            return f"{elapsed:.2f} s wall time, of which {cls.fresh_s:.2f} s compiling {cls.fresh} program(s) {why}"
        if cls.loaded:
            return f"{elapsed:.2f} s wall time (compiled programs loaded from the cache)"
        return f"{elapsed:.2f} s wall time"


def _parse_covariates(items: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise DataFormatError(f"`--covariate` must look like NAME=VALUE, got {item!r}")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            raise DataFormatError(f"`--covariate {key.strip()}` must be a number, got {val.strip()!r}") from None
    return out


def _check_names(m, values: dict, flag: str, kinds: tuple[str, ...]) -> None:
    """Names given to ``--param``/``--covariate`` must be the model's (by name or label, any
    case): the error names the flag, not ``simulate()``'s keyword."""
    from .errors import ModelSpecError
    from .simulation import resolve_param_key

    for key in values:
        if key.startswith("omega_") and key[6:] in m.parameter_names:  # from --fit
            continue
        try:
            kind, _ = resolve_param_key(m, key)
        except ModelSpecError:
            kind = None
        if kind not in kinds:
            what = "a covariate" if kinds == ("cov",) else "a parameter or covariate"
            raise DataFormatError(f"`{flag} {key}` is not {what} of model {m.name!r}; parameters: {list(m.parameter_names)}, "
                                  f"covariates: {list(m.covariate_names)}")


def _fit_draws(fit: str, draws: int | None, m) -> tuple[dict, int]:
    """``draws`` posterior draws of a stored fit (evenly spaced over its chains x draws, as the
    sweep picks them), by parameter name; the fit's IIV SDs (``omega_<name>``) per draw."""
    import warnings

    import numpy as np

    from .errors import Il2pkpdWarning
    from .io.fits import load_fit

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Il2pkpdWarning)
        result = load_fit(fit, model=m)
    if result.model_name and result.model_name != m.name:
        raise DataFormatError(f"`--fit` {fit!r} is a fit of model {result.model_name!r}, not of {m.name!r}; pass --model {result.model_name}")
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    post = result.population_draws()
    post = {k: np.asarray(v) for k, v in post.items() if k in m.parameter_names or (k.startswith("omega_") and k[6:] in m.parameter_names)}
    total = len(next(iter(post.values()))) if post else 0
    if total == 0:
        raise DataFormatError(f"`--fit` {fit!r} holds no population draws of model {m.name!r}'s parameters")
    n = min(100, total) if draws is None else draws
    if not 1 <= n <= total:
        raise DataFormatError(f"`--draws` must be between 1 and the fit's {total} posterior draws, got {n}")
    pick = np.unique(np.linspace(0, total - 1, n).round().astype(int))
    return {k: v[pick] for k, v in post.items()}, len(pick)


@app.command()
@_handle_errors
def simulate(
    model: Annotated[str, typer.Option(help="Model name (see `il2pkpd models`) or path to a .toml file.")] = "ivory",
    regimen: Annotated[Optional[str], typer.Option(help='Regimen, e.g. "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7" (the default, without --data).')] = None,
    data: Annotated[Optional[Path], typer.Option(help="NONMEM-style CSV (doses, covariate and parameter columns) instead of a regimen; without --horizon, outputs at its records.")] = None,
    horizon: Annotated[Optional[float], typer.Option(help="Last output time, in --time-unit (default 365; with --data, its last record).")] = None,
    step: Annotated[float, typer.Option(help="Spacing of output times, in --time-unit. Printed maxima and minima do not depend on it.")] = 1.0,
    time_unit: Annotated[Optional[str], typer.Option(help="Unit of --horizon/--step (default: the model's).")] = None,
    n_subjects: Annotated[Optional[int], typer.Option(help="Virtual subjects (IIV sampled when > 1; default 1; with --data, its subjects).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    param: Annotated[Optional[list[str]], typer.Option(help="Override a parameter: NAME=VALUE (repeatable).")] = None,
    covariate: Annotated[Optional[list[str]], typer.Option(help="Set a covariate: NAME=VALUE (repeatable), e.g. bsa=1.8.")] = None,
    fit: Annotated[Optional[str], typer.Option(help="Population parameters from this stored fit's posterior draws (a fits/ folder name or path), e.g. ivory-published.")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Posterior draws from --fit, evenly spaced (default: 100, or all when fewer).")] = None,
    solver: Annotated[str, typer.Option(help=f"ODE solver: {', '.join(SOLVER_NAMES)} (rodas4: stiff, long follow-up).")] = _SIM.solver,
    rtol: Annotated[float, typer.Option(help="Relative tolerance of the ODE solver.")] = _SIM.rtol,
    atol: Annotated[float, typer.Option(help="Absolute tolerance, in the states' declared units.")] = _SIM.atol,
    max_steps: Annotated[int, typer.Option(help="Maximum solver steps: over a subject's whole horizon for rodas4, between two events for the other solvers.")] = _SIM.max_steps,
    outputs: Annotated[Optional[str], typer.Option(help="Comma-separated outputs to summarise and plot (default: all in the table, the first 6 in the plot).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write results (every output and state) to .csv or .nc.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a figure of the outputs (.png, .pdf, .svg ...).")] = None,
) -> None:
    """Simulate a regimen (or a dataset's doses) on a model and print a summary of its outputs.

    The printed maxima, minima and their times are located by the solver between the output
    times (exact to the solver's tolerance), not read off the --step grid."""
    import numpy as np

    from .io.model_file import load_model
    from .simulation import simulate as run
    from .solve import SolverOptions

    if regimen is not None and data is not None:
        raise DataFormatError("give either --regimen or --data, not both")
    if draws is not None and fit is None:
        raise DataFormatError(f"`--draws` needs --fit (posterior draws of a stored fit), got --draws {draws}")
    if (horizon is not None and not horizon > 0) or not step > 0:
        raise DataFormatError(f"`--horizon` and `--step` must be > 0, got {horizon!r} and {step!r}")
    if n_subjects is not None and data is not None:
        raise DataFormatError(f"`--n-subjects` cannot be used with --data (one virtual subject per dataset subject), got --n-subjects {n_subjects}")
    if n_subjects is not None and n_subjects < 1:
        raise DataFormatError(f"`--n-subjects` must be >= 1, got {n_subjects}")
    for path, flag, suffixes in ((out, "--out", (".csv", ".nc")), (plot, "--plot", _PLOT_SUFFIXES)):
        if path is not None:
            _check_writable(path, flag, suffixes)  # before the (slow) simulation, never after it
    SolverOptions(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)  # bad options fail here, before the work
    _CompileMeter.install()
    t0 = time.perf_counter()
    m = load_model(model)
    names = [o.strip() for o in outputs.split(",") if o.strip()] if outputs else None
    for name in names or []:
        if name not in m.symbolic.output_names:
            raise DataFormatError(f"`--outputs` names {name!r}, which is not an output of model {m.name!r}; outputs: {list(m.symbolic.output_names)}")
    params: dict = {}
    n_draws = None
    if fit is not None:
        params, n_draws = _fit_draws(fit, draws, m)
    params.update(_parse_params(param, False))
    covariates = _parse_covariates(covariate)
    _check_names(m, params, "--param", ("param", "cov"))
    _check_names(m, covariates, "--covariate", ("cov",))
    records = None
    if data is not None:
        from .io.nonmem import read_nonmem_csv

        source = read_nonmem_csv(data)
        records = source.subject_records(m)
        per_row: dict = {}
        source.subject_values(m, per_row)
        if horizon is None and not per_row:
            horizon = max(max(r.time for r in s) for s in records) if records else 0.0
            if time_unit is not None:
                from .units import conversion_factor

                horizon /= conversion_factor(time_unit, m.time_unit)
        elif per_row and horizon is not None:
            raise DataFormatError(f"`--horizon` cannot be used with --data {str(data)!r}: its columns {sorted(per_row)} change between "
                                  "records, so it is simulated at its own records (leave out --horizon)")
        label = f"dataset {data}"
    else:
        source = regimen or "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7"
        horizon = 365.0 if horizon is None else horizon
        label = source
    times = np.arange(0.0, horizon + step / 2, step) if horizon is not None and horizon > 0 else None
    if plot is not None and times is None:
        raise DataFormatError("`--plot` needs a time grid; with this --data the outputs are at its records")
    from rich.console import Console

    kw = dict(params=params or None, covariates=covariates or None, seed=seed, time_unit=time_unit,
              solver=solver, rtol=rtol, atol=atol, max_steps=max_steps, extrema=names or True, hint_style="cli")
    if data is None:
        kw["n_subjects"] = n_subjects or 1
    with _ProgressBar(Console(stderr=True), "simulate") as tick:
        ds = run(m, source, times, progress=tick, **kw)
    elapsed = time.perf_counter() - t0
    counts = [len(r) for r in records] if records is not None and times is None else None
    _print_summary(ds, label, elapsed, names, counts=counts, draws_from=fit if n_draws else None)
    if out is not None:
        from .io.output import write_simulation

        write_simulation(_mask_padding(ds, counts) if counts else ds, out)
        typer.echo(f"wrote {out}")
    if plot is not None:
        from .plot import plot_simulation

        # every requested output is drawn (not the first six), with dose markers for a regimen
        plot_simulation(ds, outputs=names or None, path=plot, regimen=source if data is None else None, model=m)
        typer.echo(f"wrote {plot}")


class _ProgressBar:
    """A transient rich progress bar on stderr, only on a terminal (never in a pipe or a log);
    yields the ``progress(done, total)`` callback of ``simulate()`` (or None)."""

    def __init__(self, console, what: str):
        self.console, self.what, self.bar = console, what, None

    def __enter__(self):
        if not self.console.is_terminal:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn(f"[bold]{self.what}[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn("solves"),
                            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=self.console, transient=True)
        self.bar.start()
        task = self.bar.add_task(self.what, total=None)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _mask_padding(ds, counts):
    """A dataset at its records: blank the padding after each subject's last record."""
    import numpy as np

    ds = ds.copy()
    for v in list(ds.data_vars) + ["record_time"]:
        if "record" in ds[v].dims:
            a = ds[v].values.astype(float).copy()
            for i, n in enumerate(counts):
                a[..., i, n:] = np.nan
            if v in ds.coords:
                ds = ds.assign_coords({v: (ds[v].dims, a, ds[v].attrs)})
            else:
                ds[v] = (ds[v].dims, a, ds[v].attrs)
    return ds


def _print_summary(ds, label: str, elapsed: float, names: list[str] | None = None, *, counts: list[int] | None = None,
                   draws_from: str | None = None) -> None:
    """The summary table: per output its value at the first and last output time, and its
    maximum and minimum with their times (located by the solver: ``simulate(extrema=...)``);
    with several subjects or draws, the median of each over them."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    tu = ds.attrs.get("time_unit", "")
    n = ds.sizes.get("subject", 1)
    nd = ds.sizes.get("draw", 0)
    who = f"{n} subject{'s' if n > 1 else ''}"
    if nd:
        who = f"{nd} posterior draw{'s' if nd > 1 else ''} of {draws_from} x {who}"
    many = n * max(nd, 1) > 1
    title = f"{ds.attrs['model']}: {label}  ({who}{'; medians over them' if many else ''}; simulated)"
    ragged = counts is not None
    first, last = ("at first record", "at last record") if ragged else (f"at t={float(ds['time'].values[0]):g}", "at end")
    table = Table("output", "unit", first, "max", f"time of max ({tu})", "min", f"time of min ({tu})", last, title=title)
    shown = names or [v for v in ds.data_vars if ds[v].attrs.get("kind") == "output"]
    located = ""
    for name in shown:
        da = ds[name]
        tdim = "record" if ragged else "time"
        vals = np.moveaxis(da.values, da.dims.index(tdim), -1).reshape(-1, da.sizes[tdim])
        if ragged:  # rows are (draw,) subject: each subject's own last record
            end = np.array([vals[k, counts[k % len(counts)] - 1] for k in range(vals.shape[0])])
        else:
            end = vals[:, -1]

        def med(x):
            x = np.asarray(x, dtype=float).ravel()
            return float(np.nanmedian(x)) if np.isfinite(x).any() else float("nan")

        ext = [ds[f"{name}_{k}"].values for k in ("max", "tmax", "min", "tmin")]
        located = ds[f"{name}_max"].attrs.get("located", "")
        table.add_row(name, da.attrs.get("unit", ""), f"{med(vals[:, 0]):.4g}", *(f"{med(x):.4g}" for x in ext), f"{med(end):.4g}")
    console = Console(width=160)
    console.print(table)
    if located.startswith("by the solver"):
        console.print("[dim]max, min and their times: located by the solver between the output times (exact to its tolerance), "
                      "not read off the output grid[/dim]")
    else:
        console.print(f"[dim]max, min and their times: {located}[/dim]")
    console.print(f"[dim]{_CompileMeter.footer(elapsed)}[/dim]")


@app.command()
@_handle_errors
def predict(
    model: Annotated[str, typer.Option(help="Model name or path to a .toml file.")],
    data: Annotated[Path, typer.Option(help="NONMEM-style CSV (ID, TIME, EVID, AMT, CMT, RATE, II, ADDL, SS, DVID ...).")],
    out: Annotated[Path, typer.Option(help="Output CSV: every input row plus PRED.")],
    param: Annotated[Optional[list[str]], typer.Option(help="NAME=VALUE or NAME=COLUMN (repeatable), e.g. --param ALAG2=LAGT.")] = None,
    pred_unit: Annotated[Optional[str], typer.Option(help="Unit of PRED, e.g. ng/mL (default: the output's).")] = None,
    solver: Annotated[str, typer.Option(help=f"ODE solver: {', '.join(SOLVER_NAMES)} (rodas4: stiff).")] = _SIM.solver,
    rtol: Annotated[float, typer.Option(help="Relative tolerance of the ODE solver.")] = _SIM.rtol,
    atol: Annotated[float, typer.Option(help="Absolute tolerance, in the states' declared units.")] = _SIM.atol,
) -> None:
    """Write every dataset row back with PRED: the model's observed output at that record."""
    from .io.model_file import load_model
    from .io.nonmem import read_nonmem_csv
    from .io.predict import write_predictions
    from .prediction import predict as run
    from .solve import SolverOptions

    options = SolverOptions(solver=solver, rtol=rtol, atol=atol)  # bad options fail here, before the work
    m = load_model(model)
    d = read_nonmem_csv(data)
    result = run(m, d, _parse_params(param, True), pred_unit=pred_unit, options=options)
    write_predictions(result, out)
    typer.echo(f"wrote {out} ({len(result)} rows, {len(d.subject_ids)} subjects)")


@app.command()
@_handle_errors
def fit(
    model: Annotated[str, typer.Option(help="Model name or path to a .toml file (priors and IIV from the file).")],
    data: Annotated[Path, typer.Option(help="NONMEM-style CSV with DV (and CENS/LLOQ, EVENT rows).")],
    out: Annotated[Path, typer.Option(help="Output folder: posterior.nc, summary.csv, fit.json.")],
    method: Annotated[str, typer.Option(help="nuts (the posterior; default), map (joint posterior mode), or maximum likelihood: focei, foce or laplace (NONMEM's OFV, SEs).")] = "nuts",
    draws: Annotated[Optional[int], typer.Option(help="nuts: posterior draws per chain [default: 1000].")] = None,
    tune: Annotated[Optional[int], typer.Option(help="nuts: warm-up iterations per chain [default: 1000].")] = None,
    chains: Annotated[Optional[int], typer.Option(help="nuts: chains [default: 4].")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="nuts: nutpie (default), pymc, numpyro or blackjax ('map' means --method map).")] = None,
    init: Annotated[Optional[Path], typer.Option(help="nuts: start from this maximum-likelihood fit folder (il2pkpd fit --method focei): its estimates, conditional modes and, with --sampler numpyro, its covariance as the mass matrix.")] = None,
    mass_matrix: Annotated[Optional[str], typer.Option(help="nuts: auto (from --init where the sampler takes it), adapt, init (start from --init's covariance, then adapt) or fixed [default: auto].")] = None,
    sir: Annotated[Optional[int], typer.Option(help="focei/foce/laplace: SIR samples for parameter uncertainty (a fifth kept as draws) [default: 0, none].")] = None,
    sir_iterations: Annotated[Optional[int], typer.Option(help="focei/foce/laplace: iterate SIR this many times, each proposal the previous resamples' covariance (Dosne et al. 2017) [default: 1].")] = None,
    priors: Annotated[bool, typer.Option("--priors", help="focei/foce/laplace: MAP-FOCE-I with the model file's priors.")] = False,
    restarts: Annotated[Optional[int], typer.Option(help="focei/foce/laplace: estimate again from this many perturbed starts, keep the best [default: 0].")] = None,
    ofv_tol: Annotated[Optional[float], typer.Option(help="focei/foce/laplace: stop once the OFV falls by less than this over 5 iterations, parameters steady to ~3 digits [default: L-BFGS-B's gradient test].")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    solver: Annotated[str | None, typer.Option(help=f"ODE solver of the likelihood [default: {_FIT.solver}; {_EST.solver} for focei/foce/laplace].")] = None,
    rtol: Annotated[float | None, typer.Option(help=f"Relative tolerance of the ODE solver [default: {_FIT.rtol:g}; {_EST.rtol:g} for focei/foce/laplace].")] = None,
    atol: Annotated[float | None, typer.Option(help=f"Absolute tolerance, in the states' declared units [default: {_FIT.atol:g}; {_EST.atol:g} for focei/foce/laplace].")] = None,
) -> None:
    """Fit a model to a dataset by NUTS, MAP, FOCE-I, FOCE or Laplace and write the fit folder."""
    import warnings

    from rich.console import Console

    from .inference import fit as run
    from .inference.estimators import ESTIMATORS
    from .inference.fit import FIT_METHODS
    from .io.fits import write_fit
    from .io.model_file import load_model
    from .io.nonmem import read_nonmem_csv
    from .solver_options import default_options

    if method not in FIT_METHODS:
        raise OptionError(f"--method must be one of {list(FIT_METHODS)}, got {method!r}")
    # checked before the (slow) data and model work; the method's own defaults where not given
    options = default_options(ESTIMATORS["map" if sampler == "map" else method].solver_defaults, solver=solver, rtol=rtol, atol=atol)
    m = load_model(model)
    d = read_nonmem_csv(data)
    console = Console(stderr=True)
    init_fit = None
    if init is not None:
        from .io.fits import load_fit

        try:
            init_fit = load_fit(init, model=m)
        except DataFormatError as exc:
            raise DataFormatError(f"--init: {exc}") from None
    settings = {"draws": draws, "tune": tune, "chains": chains, "sampler": sampler, "sir_samples": sir, "sir_iterations": sir_iterations, "restarts": restarts,
                "priors": True if priors else None, "ofv_tol": ofv_tol, "init": init_fit, "mass_matrix": mass_matrix}
    settings = {k: v for k, v in settings.items() if v is not None}  # given ones only: the method refuses what it does not take
    with console.status(f"fitting {m.name} to {data} ({sampler or method}) ..."), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(m, d, seed=seed, options=options, progressbar=False, method=method, **settings)
    for w in caught:
        if issubclass(w.category, UserWarning):
            typer.echo(f"warning: {w.message}", err=True)
    write_fit(result, out)
    Console().print(result.summary.to_string())
    typer.echo(f"wrote {out} ({result.info['wall_time_s']:.1f} s)")


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


@app.command()
@_handle_errors
def sweep(
    out: Annotated[Path, typer.Option(help="Output folder (Parquet chunks, manifest.json, summary.csv). Rerun to resume.")],
    design: Annotated[Optional[Path], typer.Option(help="TOML design file (regimens, parameter grid or LHS, fit, metrics, targets).")] = None,
    model: Annotated[str, typer.Option(help="Model name or .toml path (flag designs).")] = "ivory",
    dose: Annotated[Optional[str], typer.Option(help="Comma-separated doses, e.g. 0.3,0.5,1,1.5,2,3.")] = None,
    unit: Annotated[str, typer.Option(help="Dose unit: MIU, MIU/m2, mg ...")] = "MIU",
    interval: Annotated[str, typer.Option(help="Comma-separated maintenance intervals, e.g. 1d,3d,7d.")] = "7d",
    induction: Annotated[int, typer.Option(help="Daily induction doses before the maintenance interval (IVORY: 5).")] = 0,
    duration: Annotated[str, typer.Option(help="Treatment duration from the first dose, e.g. 8w.")] = "8w",
    regimen: Annotated[Optional[list[str]], typer.Option(help='Extra regimen LABEL=TEXT (repeatable), e.g. IVORY="1.5 MIU sc qd x5 then 1.5 MIU sc qw x7".')] = None,
    horizon: Annotated[Optional[float], typer.Option(help="Simulated time from the first dose (model time unit; default 365).")] = None,
    metrics: Annotated[Optional[str], typer.Option(help="Semicolon-separated metrics, e.g. 'cmax(treg_fold); change(tbr, 60)' (default: the IVORY set).")] = None,
    target: Annotated[Optional[list[str]], typer.Option(help="Decision target (repeatable), e.g. 'cmax(treg_fold) >= 1.75 & cmax(nk_fold) < 1.5'.")] = None,
    fit: Annotated[Optional[str], typer.Option(help="Draw population parameters from this stored fit.")] = None,
    prior: Annotated[bool, typer.Option("--prior", help="Draw population parameters from the model file's priors.")] = False,
    draws: Annotated[Optional[int], typer.Option(help="Population draws per cell (default 1: typical values).")] = None,
    subjects: Annotated[Optional[int], typer.Option(help="Virtual subjects per draw with IIV (0: the typical subject).")] = None,
    param: Annotated[Optional[list[str]], typer.Option(help="Parameter grid NAME=V1,V2,... (repeatable).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    solver: Annotated[Optional[str], typer.Option(help=f"ODE solver (default {_SWEEP.solver}: stiff follow-up; or the --design file's).")] = None,
    rtol: Annotated[Optional[float], typer.Option(help=f"Relative tolerance of the ODE solver (default {_SWEEP.rtol:g}: metrics to ~3 digits; or the --design file's).")] = None,
    atol: Annotated[Optional[float], typer.Option(help=f"Absolute tolerance, in the states' declared units (default {_SWEEP.atol:g}; or the --design file's).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Dask LocalCluster worker processes (default: one per CPU core, at most one per chunk); 0 runs in this process without Dask.")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Address of a running Dask scheduler, e.g. tcp://host:8786.")] = None,
    chunk_draws: Annotated[Optional[int], typer.Option(help="Draws per chunk (default: up to 4,096 solves per chunk).")] = None,
    heatmap: Annotated[Optional[str], typer.Option(help="Write OUT/heatmap.png of this summary column over dose x interval, e.g. 'cmax(treg_fold) median'.")] = None,
) -> None:
    """Sweep regimens x parameters x draws x virtual subjects; print and write decision metrics."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .design.sweep_design import IVORY_DEFAULT_METRICS, SweepDesign, design_from_toml, regimens_from_flags
    from .design.sweep_run import run_sweep
    from .io.entry import prepare_sweep

    _check_folder_writable(out, "--out")
    overrides = {"horizon": horizon, "draws": draws, "subjects": subjects, "seed": seed, "solver": solver, "rtol": rtol, "atol": atol, "fit": fit, "prior": prior or None}
    if metrics:
        overrides["metrics"] = tuple(x.strip() for x in metrics.split(";") if x.strip())
    if target:
        overrides["targets"] = tuple(target)
    grid = []
    for item in param or []:
        name, sep, values = item.partition("=")
        try:
            grid.append((name.strip(), tuple(float(v) for v in _split(values))))
        except ValueError:
            raise DataFormatError(f"`--param` must look like NAME=V1,V2,..., got {item!r}") from None
        if not sep or not grid[-1][1]:
            raise DataFormatError(f"`--param` must look like NAME=V1,V2,..., got {item!r}")
    extra = []
    for item in regimen or []:
        label, sep, text = item.partition("=")
        if not sep or not label.strip():
            raise DataFormatError(f"`--regimen` must look like LABEL=TEXT, got {item!r}")
        extra.append((label.strip(), text.strip()))
    if design is not None:
        if dose or grid or extra:
            raise DataFormatError("give the regimens either in --design or by --dose/--regimen/--param flags, not both")
        spec = design_from_toml(design, **{k: v for k, v in overrides.items() if v is not None})
    else:
        regs = list(extra)
        if dose:
            try:
                doses = [float(x) for x in _split(dose)]
            except ValueError:
                raise DataFormatError(f"`--dose` must be comma-separated numbers, got {dose!r}") from None
            regs = regimens_from_flags(doses, unit, _split(interval), induction=induction, duration=duration) + regs
        if not regs:
            raise DataFormatError("no regimens: give --dose (with --interval), --regimen LABEL=TEXT or --design FILE")
        kw = {k: v for k, v in overrides.items() if v is not None}
        kw.setdefault("metrics", IVORY_DEFAULT_METRICS if model == "ivory" else ())
        if not kw["metrics"]:
            raise DataFormatError("give --metrics for a model other than ivory")
        spec = SweepDesign(model, tuple(regs), params=tuple(grid), **kw)
    if heatmap:
        allowed = [f"{m} {q}" for m in spec.all_metric_texts() for q in ("mean", "q05", "median", "q95")] + [f"P({t})" for t in spec.targets]
        if heatmap not in allowed:
            raise DataFormatError(f"`--heatmap` must name a summary column, e.g. {allowed[:3]}; got {heatmap!r}")
    if workers is not None and workers < 0:
        raise DataFormatError(f"`--workers` must be >= 0, got {workers}")
    if not _state["debug"]:
        _quiet_dask()
    plan = prepare_sweep(spec, out, workers=workers or 0, scheduler=scheduler, chunk_draws=chunk_draws)
    if workers is None and scheduler is None:
        # a LocalCluster by default, when there is more than one chunk and more than one core to run them on
        plan.workers = min(os.cpu_count() or 1, len(plan.todo)) if len(plan.todo) > 1 and (os.cpu_count() or 1) > 1 else 0
    console = Console(stderr=True)
    n_per_chunk = plan.chunk_draws * max(1, spec.subjects)
    where = f"{plan.workers} worker(s)" if plan.workers else ("scheduler " + scheduler if scheduler else "in process")
    columns = (TextColumn(f"[bold]sweep[/bold] ({where})"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("sweep", total=None, rate="")
        started = time.perf_counter()

        def tick(done: int, total: int, skipped: int) -> None:
            elapsed = time.perf_counter() - started
            rate = f"{_sig3((done - skipped) * n_per_chunk / elapsed)} solves/s" if done > skipped and elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        result = run_sweep(plan, progress=tick)
    _print_sweep(result)
    if heatmap:
        from .plot import plot_sweep_heatmap

        plot_sweep_heatmap(result.summary, heatmap, path=out / "heatmap.png")
        typer.echo(f"wrote {out / 'heatmap.png'}")
    typer.echo(f"wrote {out} ({result.chunks_run} chunks run, {result.chunks_skipped} already done; {result.wall_time_s:.1f} s)")


@app.command()
@_handle_errors
def optimize(
    objective: Annotated[str, typer.Option(help="maximise|minimise QUANTITY: P(TARGET), E(METRIC) or total_dose, e.g. 'maximise P(cmax(treg_fold) >= 1.75)'.")],
    space: Annotated[str, typer.Option(help="The regimen variables, e.g. 'dose=0.1..3; interval=1d,2d,3d,7d; induction=0..7' (LO..HI continuous; A,B,C enumerated; counts are integers).")],
    horizon: Annotated[float, typer.Option(help="Simulated time from the first dose (model time unit); metric times must lie within it.")],
    out: Annotated[Path, typer.Option(help="Result file (.json): the optimal regimen, its quantities with uncertainty, constraints, every candidate.")],
    regimen: Annotated[Optional[str], typer.Option(help="Regimen template with {name} placeholders, e.g. '{dose} MIU sc qd x{induction} then {dose} MIU sc q{interval} x7' [default: dose (with unit) every interval after induction daily doses, for --duration].")] = None,
    duration: Annotated[str, typer.Option(help="Treatment duration of the default regimen (without --regimen), e.g. 8w.")] = "8w",
    constraint: Annotated[Optional[list[str]], typer.Option(help="QUANTITY <= | >= NUMBER (repeatable), e.g. 'P(cmax(nk_fold) >= 1.5) <= 0.1' or 'total_dose <= 20'.")] = None,
    model: Annotated[str, typer.Option(help="Model name or .toml path.")] = "ivory",
    fit: Annotated[Optional[str], typer.Option(help="Population draws from this stored fit (default: the model file's typical values).")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Population draws of --fit used (evenly spaced) [default: min(100, all)].")] = None,
    subjects: Annotated[int, typer.Option(help="Virtual subjects per draw with IIV (0: the typical subject of each draw).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the virtual subjects.")] = 0,
    temperature: Annotated[float, typer.Option(help="Relative width of the logistic smoothing each probability's indicator.")] = 0.05,
    grid_step: Annotated[Optional[float], typer.Option(help="Output grid spacing (model time unit) [default: one day].")] = None,
    dose_offsets: Annotated[Optional[str], typer.Option(help="Comma-separated output times after every dose, in hours [default: every 10 min to 3 h, then 4,6,8,12,24].")] = None,
    solver: Annotated[Optional[str], typer.Option(help=f"ODE solver [default: {_OPT.solver}, whose loop carries the gradients].")] = None,
    rtol: Annotated[Optional[float], typer.Option(help=f"Relative tolerance of the ODE solver [default: {_OPT.rtol:g}].")] = None,
    atol: Annotated[Optional[float], typer.Option(help=f"Absolute tolerance, in the states' declared units [default: {_OPT.atol:g}].")] = None,
) -> None:
    """Find the regimen that optimises a probability or expectation under constraints."""
    import json
    import warnings

    from rich.console import Console
    from rich.table import Table

    from .design.optimize import optimize_regimen
    from .io.model_file import load_model
    from .io.output import atomic_write
    from .solver_options import default_options

    _check_writable(out, "--out", (".json",))
    offsets = None
    if dose_offsets is not None:
        try:
            offsets = [float(x) / 24.0 for x in _split(dose_offsets)]
        except ValueError:
            raise DataFormatError(f"`--dose-offsets` must be comma-separated hours, e.g. 1,2,4,8, got {dose_offsets!r}") from None
        if not offsets or min(offsets) < 0:
            raise DataFormatError(f"`--dose-offsets` must be hours >= 0, got {dose_offsets!r}")
    options = default_options("optimize", solver=solver, rtol=rtol, atol=atol)
    m = load_model(model)
    _name_the_flag(m, [("--objective", objective, "objective")] + [("--constraint", c, "constraint") for c in constraint or ()] + [("--space", space, "space")])
    params = None
    if fit is not None:
        params, _ = _fit_draws(fit, draws, m)
    elif draws is not None:
        raise DataFormatError("`--draws` picks draws of --fit; without --fit the model file's typical values are one draw")
    console = Console(stderr=True)
    with console.status(f"optimising the regimen of {m.name} ..."), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if regimen is not None and duration != "8w":
            raise DataFormatError("`--duration` shapes the default regimen; with --regimen the template says how long treatment lasts")
        result = optimize_regimen(m, params, objective=objective, constraints=constraint or (), space=space, regimen=regimen, duration=duration,
                                  horizon=horizon,
                                  subjects=subjects, seed=seed, temperature=temperature, grid_step=grid_step,
                                  dose_offsets=offsets, options=options)
    for w in caught:
        if issubclass(w.category, UserWarning):
            typer.echo(f"warning: {w.message}", err=True)
    payload = {"model": m.name, "fit": fit, "objective": result.objective, "regimen": result.regimen, "values": result.values,
               "feasible": result.feasible, "constraints": result.constraints, "quantities": result.quantities,
               "candidates": result.candidates, "failed": result.failed, "settings": result.settings}
    atomic_write(out, lambda p: p.write_text(json.dumps(payload, indent=1, default=float)))
    table = Table("quantity", "mean", "q05 (draws)", "median", "q95 (draws)", "MC SE", title=f"optimum: {result.regimen or 'none feasible'}")
    for q in result.quantities:
        table.add_row(q["quantity"], *(f"{q[k]:.4g}" for k in ("mean", "q05", "median", "q95", "mc_se")))
    Console(width=200).print(table)
    for c in result.constraints:
        typer.echo(f"constraint {c['text']}: {c['value']:.4g} ({'holds' if c['satisfied'] else 'VIOLATED'}{', active' if c['active'] else ''})")
    st = result.settings
    typer.echo(f"metrics on an output grid: every {st['grid_step']:g} {m.time_unit} and {len(st['dose_offsets_days'])} times after each dose "
               f"(maxima refined by a parabola, areas by trapezoids; --grid-step and --dose-offsets make it finer)")
    typer.echo(f"wrote {out} ({st['wall_time_s']:.1f} s; {len(result.candidates)} combination(s))")
    if result.regimen is None:
        raise typer.Exit(1)


@app.command()
@_handle_errors
def power(
    out: Annotated[Path, typer.Option(help="Output folder (trial blocks as Parquet, manifest.json, summary.csv). Rerun to resume.")],
    analysis: Annotated[list[str], typer.Option(help="Analysis (repeatable): ancova(OBS, DAY), ttest(OBS, DAY), change(OBS, DAY), mmrm(OBS, DAY) (every visit up to DAY) or logrank(EVENT).")],
    n: Annotated[str, typer.Option(help="Comma-separated total sample sizes, e.g. 40,60,100,200.")],
    model: Annotated[str, typer.Option(help="Model name or .toml path.")] = "ivory",
    design: Annotated[Optional[str], typer.Option(help="A published design (ivory, lilacs, dilfrequency): its arms, allocation, samples, follow-up and dropout.")] = None,
    arm: Annotated[Optional[list[str]], typer.Option(help="Arm LABEL=REGIMEN (repeatable; REGIMEN 'none' for placebo, the control), instead of --design.")] = None,
    sample: Annotated[Optional[list[str]], typer.Option(help="What is measured when, OBS=DAY,DAY,... (repeatable; days from the first dose; with --arm).")] = None,
    event: Annotated[Optional[list[str]], typer.Option(help="Event followed (repeatable; with --arm).")] = None,
    followup: Annotated[Optional[float], typer.Option(help="Event follow-up, days (with --arm; overrides --design's).")] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Exponential dropout per year (overrides --design's).")] = None,
    accrual: Annotated[Optional[float], typer.Option(help="Enrolment period, days (the trial stops --followup days after the first entry).")] = None,
    trials: Annotated[int, typer.Option(help="Virtual trials per sample size.")] = 1000,
    fit: Annotated[Optional[str], typer.Option(help="Assurance over this stored fit's posterior draws (default: power at the model file's typical values).")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Posterior draws of --fit used (evenly spaced) [default: min(100, all)].")] = None,
    alpha: Annotated[float, typer.Option(help="Two-sided significance level.")] = 0.05,
    target: Annotated[Optional[float], typer.Option(help="Power/assurance whose sample size is wanted, e.g. 0.8.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    solver: Annotated[Optional[str], typer.Option(help=f"ODE solver [default: {_SWEEP.solver}].")] = None,
    rtol: Annotated[Optional[float], typer.Option(help=f"Relative tolerance of the ODE solver [default: {_SWEEP.rtol:g}].")] = None,
    atol: Annotated[Optional[float], typer.Option(help=f"Absolute tolerance [default: {_SWEEP.atol:g}].")] = None,
    workers: Annotated[int, typer.Option(help="Dask LocalCluster worker processes for the blocks of trials (0: in this process).")] = 0,
    scheduler: Annotated[Optional[str], typer.Option(help="Address of a running Dask scheduler, e.g. tcp://host:8786.")] = None,
) -> None:
    """Power (or assurance over a posterior) of a trial design over sample sizes: virtual trials analysed as the trial would be."""
    import dataclasses
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from .design import Arm, Sample, TrialDesign, designs
    from .design.power import trial_power
    from .io.model_file import load_model
    from .io.output import atomic_write
    from .io.sweep_store import SweepFolder
    from .solver_options import default_options

    _check_folder_writable(out, "--out")
    try:
        sizes = [int(x) for x in _split(n)]
    except ValueError:
        raise DataFormatError(f"`--n` must be comma-separated integers, e.g. 40,60,100, got {n!r}") from None
    if (design is None) == (not arm):
        raise DataFormatError("give the trial either as --design NAME or by --arm LABEL=REGIMEN flags (with --sample, --event, --followup), not both or neither")
    if design is not None:
        known = {"ivory": designs.ivory, "lilacs": designs.lilacs, "dilfrequency": designs.dilfrequency}
        if design not in known:
            raise DataFormatError(f"`--design` must be one of {sorted(known)}, got {design!r}")
        if sample or event:
            raise DataFormatError("--sample and --event go with --arm; --design brings its own")
        trial = known[design]()
    else:
        arms = []
        for item in arm:
            label, sep, text = item.partition("=")
            if not sep or not label.strip() or not text.strip():
                raise DataFormatError(f"`--arm` must look like LABEL=REGIMEN, got {item!r}")
            arms.append(Arm(label.strip(), None if text.strip().lower() in ("none", "placebo") else text.strip(), 1))
        samples = []
        for item in sample or []:
            obs, sep, days = item.partition("=")
            try:
                samples.append(Sample(obs.strip(), tuple(float(d) for d in _split(days))))
            except ValueError:
                raise DataFormatError(f"`--sample` must look like OBS=DAY,DAY,..., got {item!r}") from None
            if not sep or not samples[-1].times:
                raise DataFormatError(f"`--sample` must look like OBS=DAY,DAY,..., got {item!r}")
        trial = TrialDesign("command line", tuple(arms), tuple(samples), followup=followup or 0.0, events=tuple(event or ()))
    changes = {k: v for k, v in {"followup": followup if design else None, "dropout_per_year": dropout, "accrual": accrual}.items() if v is not None}
    trial = dataclasses.replace(trial, **changes)
    options = default_options("sweep", solver=solver, rtol=rtol, atol=atol)
    m = load_model(model)
    _name_the_flag(m, [("--analysis", a, "analysis") for a in analysis])
    params = _fit_draws(fit, draws, m)[0] if fit is not None else None
    if fit is None and draws is not None:
        raise DataFormatError("`--draws` picks draws of --fit; without --fit the model file's typical values are one draw (power)")
    if workers < 0:
        raise DataFormatError(f"`--workers` must be >= 0, got {workers}")
    if (workers or scheduler) and not _state["debug"]:
        _quiet_dask()
    store = SweepFolder(out)
    console = Console(stderr=True)
    columns = (TextColumn("[bold]power[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn("blocks"), TimeElapsedColumn(), TextColumn("left"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("power", total=None)
        result = trial_power(m, trial, analysis, sizes, n_trials=trials, params=params, alpha=alpha, target=target, seed=seed, store=store,
                             options=options, workers=workers, scheduler=scheduler,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    store.write_summary(result.table)
    if target is not None:
        found = [{"analysis": a, "comparison": c, "target": target, "n_total": v, "how": result.sample_size_method[(a, c)]}
                 for (a, c), v in result.sample_size.items()]
        atomic_write(out / "sample_size.json", lambda p: p.write_text(json.dumps(found, indent=1)))
    quantity = result.table["quantity"].iloc[0]
    table = Table("analysis", "comparison", "N", quantity, "MC SE", "trials", "failed solves", "no test (e.g. no event)", "estimate median [90%]",
                  title=f"{quantity} of {trial.name} ({m.name}); SIMULATED")
    for _, r in result.table.iterrows():
        table.add_row(r["analysis"], r["comparison"], str(r["n_total"]), f"{r['value']:.3f}", f"{r['mc_se']:.3f}", str(r["trials"]), str(r["failed"]), str(r["undefined"]),
                      f"{r['estimate']} {r['estimate_median']:.3g} [{r['estimate_q05']:.3g}, {r['estimate_q95']:.3g}]")
    Console(width=200).print(table)
    for (a, c), v in result.sample_size.items():
        how = result.sample_size_method[(a, c)]
        if how == "interpolated":
            text = f"{v:.1f} (interpolated between the sizes given)"
        elif how == "at or below the smallest size":
            text = f"<= {v:g} (the smallest size given already reaches it)"
        else:
            text = "not reached within the sizes given"
        typer.echo(f"N for {quantity} {target:g} ({a}, {c}): {text}")
    typer.echo(f"wrote {out} ({result.settings['wall_time_s']:.1f} s)")


@app.command()
@_handle_errors
def claims(
    model: Annotated[str, typer.Argument(help="Model name or .toml path; its claims are claims/<name>.toml beside the model file.")] = "ivory",
    fit: Annotated[Optional[str], typer.Option(help="Stored fit whose posterior draws are checked too (e.g. ivory-published).")] = None,
    draws: Annotated[int, typer.Option(min=2, help="Posterior draws used (evenly spaced).")] = 100,
    prior: Annotated[int, typer.Option(min=0, help="Prior draws for a prior-predictive check (0: none).")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Write the full table here (.csv).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when a computed verdict differs from the one the claims file records.")] = False,
) -> None:
    """Check the behaviours a model file's descriptions state (its claims file) by simulation."""
    from rich.console import Console
    from rich.table import Table

    from .io.claims import check_claims, claims_path, load_claims
    from .io.model_file import load_model
    from .io.output import atomic_write

    if out is not None:
        _check_writable(out, "--out", (".csv",))
    m = load_model(model)
    model_file = model if model.endswith(".toml") else None
    path = claims_path(m, model_file)
    if not path.is_file():
        raise DataFormatError(f"model {m.name!r} has no claims file (looked for {path})")
    table = check_claims(m, load_claims(path, m), fit=fit, draws=draws, prior=prior, model_file=model_file)
    modes = [k for k in ("prior", "posterior") if f"{k}_verdict" in table]
    view = Table("claim", "expected", "typical", *[f"{k} median (90%), share inside" for k in modes], "verdicts",
                 title=f"claims of {m.name} ({path}); typical subject, no IIV")
    mismatch = 0
    for cid, r in table.iterrows():
        verdicts = [r["typical_verdict"]] + [r[f"{k}_verdict"] for k in modes]
        recorded = [r["recorded_typical"]] + [r[f"recorded_{k}"] for k in modes]
        differs = [a != b for a, b in zip(verdicts, recorded, strict=False) if b is not None and b == b]
        mismatch += any(differs)
        cells = [f"{_sig3(r[f'{k}_median'])} ({_sig3(r[f'{k}_q5'])}-{_sig3(r[f'{k}_q95'])}), {r[f'{k}_share_inside']:.2f}" for k in modes]
        view.add_row(cid, f"[{_sig3(r['expect_low'])}, {_sig3(r['expect_high'])}] {r['unit']}", _sig3(r["typical_value"]), *cells,
                     " / ".join(verdicts) + ("  (recorded: " + " / ".join(str(x) for x in recorded) + ")" if any(differs) else ""))
    Console(width=200).print(view)
    if out is not None:
        atomic_write(out, lambda p: table.to_csv(p))
        typer.echo(f"wrote {out}")
    typer.echo(f"{len(table)} claims; {mismatch} differ from the verdicts {path.name} records")
    if check and mismatch:
        raise typer.Exit(1)


def _sig3(x: float) -> str:
    """A rate to three significant digits, with thousands separators (0.0524, 12.3, 1,234)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _quiet_dask() -> None:
    """Silence Dask distributed's INFO/WARNING chatter (scheduler, nanny and worker start and
    stop: ~34 lines before a sweep's table); errors still show, and --debug shows all.
    Importing ``distributed`` sets its loggers' levels, so this runs after that import."""
    try:
        import distributed  # noqa: F401
    except ImportError:  # the in-process sweep needs no Dask
        return
    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _print_sweep(result) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result.summary
    d = result.design
    src = f"fit {d.fit}" if d.fit else ("prior draws" if d.prior else "typical values")
    title = (f"{d.model}: {len(s)} cells x {d.draws} draws ({src}) x {max(1, d.subjects)} subject(s); "
             "median [5%, 95%]; SIMULATED")
    shown = [c[: -len(" median")] for c in s.columns if c.endswith(" median")]
    probs = [c for c in s.columns if c.startswith("P(")]
    table = Table("regimen", *shown, *probs, "failed", title=title)
    for _, row in s.iterrows():
        cells = []
        for m in shown:
            lo, mid, hi = row.get(f"{m} q05"), row[f"{m} median"], row.get(f"{m} q95")
            cells.append(f"{mid:.3g}" if lo == hi else f"{mid:.3g} [{lo:.3g}, {hi:.3g}]")
        cells += [f"{row[p]:.2f}" for p in probs]
        table.add_row(str(row["regimen"]), *cells, str(int(row["failed"])))
    Console(width=220).print(table)


def main() -> None:
    """Entry point. Usage errors (unknown option, missing value) exit with 2, as do il2pkpd
    errors; anything else is a bug and shows its traceback (exit 1)."""
    app()


if __name__ == "__main__":
    main()
