"""Command line: ``il2pkpd simulate``, ``predict``, ``fit``, ``sweep``, ``models``, ``datasets``.

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

from .errors import DataFormatError, Il2pkpdError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="il2pkpd: PK/PD of low-dose IL-2 (aldesleukin), solved with JAX.")
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


@app.command()
@_handle_errors
def simulate(
    model: Annotated[str, typer.Option(help="Model name (see `il2pkpd models`) or path to a .toml file.")] = "ivory",
    regimen: Annotated[str, typer.Option(help='Regimen, e.g. "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7".')] = "1.5 MIU sc qd x5 then 1.5 MIU sc qw x7",
    horizon: Annotated[float, typer.Option(help="Last output time, in --time-unit.")] = 365.0,
    step: Annotated[float, typer.Option(help="Spacing of output times, in --time-unit.")] = 1.0,
    time_unit: Annotated[Optional[str], typer.Option(help="Unit of --horizon/--step (default: the model's).")] = None,
    n_subjects: Annotated[int, typer.Option(help="Virtual subjects (IIV sampled when > 1).")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    param: Annotated[Optional[list[str]], typer.Option(help="Override a parameter: NAME=VALUE (repeatable).")] = None,
    outputs: Annotated[Optional[str], typer.Option(help="Comma-separated outputs to summarise and plot (default: all in the table, the first 6 in the plot).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write results (every output and state) to .csv or .nc.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG figure of the outputs.")] = None,
) -> None:
    """Simulate a regimen on a model and print a summary of its outputs."""
    import numpy as np

    from .io.model_file import load_model
    from .simulation import simulate as run

    if not horizon > 0 or not step > 0:
        raise DataFormatError(f"`--horizon` and `--step` must be > 0, got {horizon!r} and {step!r}")
    t0 = time.perf_counter()
    m = load_model(model)
    times = np.arange(0.0, horizon + step / 2, step)
    names = [o.strip() for o in outputs.split(",") if o.strip()] if outputs else None
    for name in names or []:
        if name not in m.symbolic.output_names:
            raise DataFormatError(f"`--outputs` names {name!r}, which is not an output of model {m.name!r}; outputs: {list(m.symbolic.output_names)}")
    ds = run(m, regimen, times, params=_parse_params(param, False), n_subjects=n_subjects, seed=seed, time_unit=time_unit)
    elapsed = time.perf_counter() - t0
    _print_summary(ds, regimen, elapsed, names)
    if out is not None:
        from .io.output import write_simulation

        write_simulation(ds, out)
        typer.echo(f"wrote {out}")
    if plot is not None:
        from .plot import plot_simulation

        plot_simulation(ds, outputs=names[:6] if names else None, path=plot)
        typer.echo(f"wrote {plot}")


def _print_summary(ds, regimen: str, elapsed: float, names: list[str] | None = None) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    tu = ds.attrs.get("time_unit", "")
    n = ds.sizes.get("subject", 1)
    title = f"{ds.attrs['model']}: {regimen}  ({n} subject{'s' if n > 1 else ''}{', median' if n > 1 else ''}; simulated)"
    table = Table("output", "unit", "at t=0", "max", f"time of max ({tu})", "min", "at end", title=title)
    t = ds["time"].values
    for name in names or [v for v in ds.data_vars if ds[v].attrs.get("kind") == "output"]:
        da = ds[name]
        v = np.nanmedian(da.values.reshape(-1, da.sizes["time"]), axis=0)
        table.add_row(name, da.attrs.get("unit", ""), f"{v[0]:.4g}", f"{v.max():.4g}", f"{t[int(np.argmax(v))]:.4g}", f"{v.min():.4g}", f"{v[-1]:.4g}")
    console = Console(width=140)
    console.print(table)
    console.print(f"[dim]{elapsed:.2f} s (including compilation on a cold cache)[/dim]")


@app.command()
@_handle_errors
def predict(
    model: Annotated[str, typer.Option(help="Model name or path to a .toml file.")],
    data: Annotated[Path, typer.Option(help="NONMEM-style CSV (ID, TIME, EVID, AMT, CMT, RATE, II, ADDL, SS, DVID ...).")],
    out: Annotated[Path, typer.Option(help="Output CSV: every input row plus PRED.")],
    param: Annotated[Optional[list[str]], typer.Option(help="NAME=VALUE or NAME=COLUMN (repeatable), e.g. --param ALAG2=LAGT.")] = None,
    pred_unit: Annotated[Optional[str], typer.Option(help="Unit of PRED, e.g. ng/mL (default: the output's).")] = None,
) -> None:
    """Write every dataset row back with PRED: the model's observed output at that record."""
    from .io.model_file import load_model
    from .io.nonmem import read_nonmem_csv
    from .io.output import atomic_write
    from .io.predict import predict as run

    m = load_model(model)
    d = read_nonmem_csv(data)
    result = run(m, d, _parse_params(param, True), pred_unit=pred_unit)
    atomic_write(out, lambda p: result.to_csv(p, index=False, float_format="%.10g"))
    typer.echo(f"wrote {out} ({len(result)} rows, {len(d.subject_ids)} subjects)")


@app.command()
@_handle_errors
def fit(
    model: Annotated[str, typer.Option(help="Model name or path to a .toml file (priors and IIV from the file).")],
    data: Annotated[Path, typer.Option(help="NONMEM-style CSV with DV (and CENS/LLOQ, EVENT rows).")],
    out: Annotated[Path, typer.Option(help="Output folder: posterior.nc, summary.csv, fit.json.")],
    draws: Annotated[int, typer.Option(help="Posterior draws per chain.")] = 1000,
    tune: Annotated[int, typer.Option(help="Warm-up iterations per chain.")] = 1000,
    chains: Annotated[int, typer.Option(help="Chains.")] = 4,
    sampler: Annotated[str, typer.Option(help="nutpie (default), pymc, numpyro, blackjax or map.")] = "nutpie",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    solver: Annotated[str, typer.Option(help="ODE solver of the likelihood: tsit5 (default) or rodas4 (stiff: years of event follow-up).")] = "tsit5",
    rtol: Annotated[float, typer.Option(help="Relative tolerance of the ODE solver (NONMEM's TOL=6 is ~1e-6).")] = 1e-6,
    atol: Annotated[float, typer.Option(help="Absolute tolerance, in the states' declared units.")] = 1e-9,
) -> None:
    """Fit a model to a dataset by NUTS (or MAP) and write the fit folder."""
    import warnings

    from rich.console import Console

    from .inference import fit as run
    from .io.fits import write_fit
    from .io.model_file import load_model
    from .io.nonmem import read_nonmem_csv
    from .solve import SolverOptions

    options = SolverOptions(solver=solver, rtol=rtol, atol=atol)  # checked before the (slow) data and model work
    m = load_model(model)
    d = read_nonmem_csv(data)
    console = Console(stderr=True)
    with console.status(f"fitting {m.name} to {data} ({sampler}) ..."), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(m, d, draws=draws, tune=tune, chains=chains, sampler=sampler, seed=seed, options=options, progressbar=False)
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
    solver: Annotated[Optional[str], typer.Option(help="rodas4 (default: stiff follow-up) or tsit5.")] = None,
    rtol: Annotated[Optional[float], typer.Option(help="Relative tolerance of the ODE solver (default 1e-4: metrics to ~4 digits).")] = None,
    atol: Annotated[Optional[float], typer.Option(help="Absolute tolerance, in the states' declared units (default 1e-7).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Dask LocalCluster worker processes (default: one per CPU core, at most one per chunk); 0 runs in this process without Dask.")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Address of a running Dask scheduler, e.g. tcp://host:8786.")] = None,
    chunk_draws: Annotated[Optional[int], typer.Option(help="Draws per chunk (default: up to 4,096 solves per chunk).")] = None,
    heatmap: Annotated[Optional[str], typer.Option(help="Write OUT/heatmap.png of this summary column over dose x interval, e.g. 'cmax(treg_fold) median'.")] = None,
) -> None:
    """Sweep regimens x parameters x draws x virtual subjects; print and write decision metrics."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .design.sweep_design import IVORY_DEFAULT_METRICS, SweepDesign, design_from_toml, regimens_from_flags
    from .io.sweep_run import prepare_sweep, run_sweep

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
        kw.setdefault("solver", "rodas4")
        if not kw["metrics"]:
            raise DataFormatError("give --metrics for a model other than ivory")
        spec = SweepDesign(model, tuple(regs), params=tuple(grid), **kw)
    if heatmap:
        allowed = [f"{m} {q}" for m in spec.all_metric_texts() for q in ("mean", "q05", "median", "q95")] + [f"P({t})" for t in spec.targets]
        if heatmap not in allowed:
            raise DataFormatError(f"`--heatmap` must name a summary column, e.g. {allowed[:3]}; got {heatmap!r}")
    if workers is not None and workers < 0:
        raise DataFormatError(f"`--workers` must be >= 0, got {workers}")
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
            rate = f"{(done - skipped) * n_per_chunk / elapsed:,.0f} solves/s" if done > skipped and elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        result = run_sweep(plan, progress=tick)
    _print_sweep(result)
    if heatmap:
        from .plot import plot_sweep_heatmap

        plot_sweep_heatmap(result.summary, heatmap, path=out / "heatmap.png")
        typer.echo(f"wrote {out / 'heatmap.png'}")
    typer.echo(f"wrote {out} ({result.chunks_run} chunks run, {result.chunks_skipped} already done; {result.wall_time_s:.1f} s)")


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
