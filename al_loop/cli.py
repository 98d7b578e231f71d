"""The ``al-loop`` command line: the only place in al-loop that prints."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from al_loop.config import CampaignConfig, ConfigError, load_campaign

if TYPE_CHECKING:
    from al_loop.stages.base import ProgressEvent

app = typer.Typer(
    help="Active learning of machine-learned interatomic potentials.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Query, summarise and export the dataset.", no_args_is_help=True)
app.add_typer(db_app, name="db")
setup_app = typer.Typer(help="Install what the DFT codes need.", no_args_is_help=True)
app.add_typer(setup_app, name="setup")
console = Console()
errors = Console(stderr=True)

CampaignFile = Annotated[Path, typer.Argument(help="The campaign's YAML file.")]
QueueOption = Annotated[
    str | None,
    typer.Option(
        help="Run this command in a job of this queue of the campaign file (a GPU partition): "
        "return at once with a MongoDB server (`al-loop status` follows it), wait for the job "
        "with the embedded server."
    ),
]


def _setup_logging(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)  # FireWorks sets its own loggers to DEBUG
    for noisy in ("quacc", "launchpad", "rocket.launcher", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_expected_notices)


def _expected_notices(record: logging.LogRecord) -> bool:
    """Drop mace's notice that float64 models run in float32 during MD: that is by design."""
    return not record.getMessage().startswith("Default dtype float32 does not match")


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into a message and an exit code (2: input, 1: server,
    3: the campaign is in use by another process)."""
    from pymongo.errors import PyMongoError

    from al_loop.campaign import CampaignNotFound
    from database import CampaignLocked, UntrustedModel, redact

    try:
        yield
    except CampaignLocked as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, markup=False)
        raise typer.Exit(3) from None
    except UntrustedModel as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    except (CampaignNotFound, ValueError, FileNotFoundError) as err:
        errors.print(f"[bold red]error:[/] {redact(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    except PyMongoError as err:
        errors.print(
            f"[bold red]error:[/] cannot use the MongoDB server: {redact(str(err))}",
            highlight=False,
        )
        raise typer.Exit(1) from None


def _fail(message: str) -> NoReturn:
    """A bad command-line argument: the message, exit 2."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def _load(path: Path) -> CampaignConfig:
    try:
        return load_campaign(path)
    except ConfigError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, markup=True)
        raise typer.Exit(2) from None


def _preflight(config: CampaignConfig) -> str:
    """What the campaign needs of this machine (al_loop/preflight.py); exit 2 if it is missing.
    Returns the label physics' identity."""
    from al_loop.preflight import preflight

    try:
        return preflight(config)
    except ConfigError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, markup=True)
        raise typer.Exit(2) from None


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    _setup_logging(verbose)


@app.command()
def validate(campaign: CampaignFile) -> None:
    """Check a campaign file, and what it needs of this machine (the label physics' files, a
    GPU for device: cuda, a named foundation model); exit 2 with the key and the fix if not."""
    config = _load(campaign)
    identity = _preflight(config)
    console.print(
        f"{campaign}: valid campaign [bold]{config.name}[/] "
        f"({'-'.join(config.system.elements)}, oracle {config.oracle.code}, "
        f"label physics {identity[:12]}, workdir {config.resolved_workdir()})"
    )


_STARTED = time.monotonic()
_KIND_STYLE = {"start": "cyan", "step": "dim", "done": "green", "warning": "yellow"}


def _progress(event: ProgressEvent) -> None:
    """One line per event, after the time since the command started, flushed (batch jobs
    write stdout to a file): ``iteration 1 explore done: frames 60, accurate 0.95, ...``."""
    minutes, seconds = divmod(int(time.monotonic() - _STARTED), 60)
    style = _KIND_STYLE.get(event.kind, "white")
    figures = _figures(event.figures)
    with _one_line_each():
        console.print(
            f"[dim]{minutes:3d}:{seconds:02d} iteration {event.iteration}[/] "
            f"[{style}]{event.stage} {event.kind}[/]" + (f": {figures}" if figures else ""),
            highlight=False,
        )
    sys.stdout.flush()


@contextlib.contextmanager
def _one_line_each() -> Iterator[None]:
    """Print without wrapping: one event or record, one line, whatever the terminal's width."""
    wrap, console.soft_wrap = console.soft_wrap, True
    try:
        yield
    finally:
        console.soft_wrap = wrap


def _figures(figures: dict[str, Any]) -> str:
    """``key value, key value``: a stage's figures as one line of text."""
    return ", ".join(f"{key} {_value(value)}" for key, value in figures.items())


def _value(value: Any) -> str:
    """A figure as text: numbers to 3 significant digits, mappings and lists inline."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _print_stats(title: str, stats: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key in (
        "structures",
        "labels",
        "labels_by_status",
        "labels_by_chemsys",
        "labels_by_iteration",
        "pressure_range_GPa",
        "wall_time_s",
        "models",
    ):
        value = stats.get(key)
        if isinstance(value, float):
            value = f"{value:.2f}"
        elif isinstance(value, list):
            value = " .. ".join(f"{v:.1f}" for v in value)
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def run(
    campaign: CampaignFile,
    workers: Annotated[int | None, typer.Option(help="Local rocket launchers.")] = None,
    accept_physics_change: Annotated[
        bool,
        typer.Option(
            "--accept-physics-change",
            help="Go on after a change of the oracle's physics settings (recorded): every "
            "structure is labelled again, earlier labels are kept but no longer trained on.",
        ),
    ] = False,
) -> None:
    """Run (or resume) a campaign: seed, label, train, then explore, select, label and train
    until the committee converges; prints progress, a summary, and where the plots are."""
    from al_loop.loop import run_campaign

    config = _load(campaign)
    _preflight(config)
    start = time.perf_counter()
    console.print(
        f"campaign [bold]{config.name}[/]: {'-'.join(config.system.elements)}, "
        f"{config.system.pressures_GPa} GPa, oracle {config.oracle.code}"
    )
    with _user_errors():
        summary = run_campaign(
            config,
            workers=workers,
            progress=_progress,
            accept_physics_change=accept_physics_change,
        )
    _print_stats(f"dataset of {config.name}", summary)
    label_stage = summary["label_stage"] or {"labels_by_status": {}}
    failed = {k: v for k, v in label_stage["labels_by_status"].items() if k != "ok"}
    if failed:
        statuses = ",".join(k for k in failed if k != "unlabelled")
        console.print(
            f"[yellow]not labelled[/]: {failed}; see them with `al-loop db query "
            f"{campaign} --status {statuses or 'running'}`; retry with `al-loop launch "
            f"{campaign} --rerun-fizzled`"
        )
    if summary["learning_curve"]:
        curve = Table(
            "iteration",
            "training labels",
            "fixed held-out",
            "energy RMSE (meV/atom)",
            "force RMSE (eV/Å)",
            "pressure RMSE (GPa)",
            title="learning curve on the fixed held-out set",
        )
        for row in summary["learning_curve"]:
            curve.add_row(
                str(row["iteration"]),
                str(row["n_train"]),
                str(row["n"]),
                _num(row["energy_rmse_meV_atom"]),
                _num(row["force_rmse_eV_A"]),
                _num(row["pressure_rmse_GPa"]),
            )
        console.print(curve)
    zero = summary.get("foundation_zero_shot")
    if zero:
        console.print(
            f"the foundation alone (zero-shot) on that set: energy RMSE "
            f"{_num(zero['energy_rmse_meV_atom'])} meV/atom "
            f"({_num(zero['energy_refit_rmse_meV_atom'])} with an energy zero per element fitted), "
            f"force {_num(zero['force_rmse_eV_A'])} eV/Å, "
            f"pressure {_num(zero['pressure_rmse_GPa'])} GPa"
        )
    finished = summary["finished"]
    if finished is None:
        iteration, stage = summary.get("unfinished", (None, "label"))
        what = "labelling" if stage == "label" else f"the {stage} stage"
        console.print(
            f"[yellow]not finished[/]: {what} of iteration {iteration} is incomplete (see the "
            "warning above); run again to resume (exit code 4)"
        )
    elif finished["reason"] == "converged":
        console.print(f"[green]converged[/] at iteration {finished['iteration']}")
    else:
        console.print(
            f"[yellow]stopped[/] after {finished['iteration']} iterations (max_iterations) "
            "without converging"
        )
    console.print(
        f"done in {time.perf_counter() - start:.1f} s; data in {summary['workdir']}, "
        f"plots in {summary['plots']}"
    )
    if finished is None:  # a batch script or a scheduler sees that the campaign must go on
        raise typer.Exit(4)


def _check_queue(config: CampaignConfig, queue: str) -> None:
    """Exit 2 unless ``queue`` (an option's ``--queue``) is a queue of the campaign file."""
    if queue not in config.queues:
        errors.print(
            f"[bold red]error:[/] --queue {queue!r}: not a queue of {config.source_file} "
            f"(queues: {', '.join(config.queues) or 'none: add a queues: section'})",
            highlight=False,
        )
        raise typer.Exit(2)


def _command_line(ctx: typer.Context) -> list[str]:
    """The command and what was given on its command line, as given (less ``--queue``; the
    campaign file's path made absolute)."""
    argv = [ctx.command.name or ""]
    for param in ctx.command.params:
        name = param.name or ""
        source = ctx.get_parameter_source(name)
        if name == "queue" or source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[name]
        if param.param_type_name == "argument":
            argv.append(str(Path(value).resolve()))
        elif getattr(param, "is_flag", False):
            argv.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            argv += [param.opts[0], str(value)]
    return argv


def _submit_command(ctx: typer.Context, config: CampaignConfig, queue: str) -> None:
    """This command line (less ``--queue``) as a Firework of ``queue``, and a job for it."""
    from al_loop.campaign import open_campaign
    from al_loop.stages.queue_jobs import wait_on_queue
    from launchers.campaign_commands import CommandJob, file_sha256

    _check_queue(config, queue)
    argv = _command_line(ctx)
    command = argv[0]
    source = config.source_file
    assert source is not None
    with _user_errors(), open_campaign(config, create=False) as session:
        fireworks = session.fireworks
        job = CommandJob(config.name, argv, str(Path.cwd()), str(source), file_sha256(source))
        fw_id, what = fireworks.submit_command(job, config.queue_category(queue))
        ready = fireworks.states(fw_ids=[fw_id]).get("READY", 0)
        jobs = fireworks.submit_to_queue(queue, ready) if ready else []
        console.print(
            f"al-loop {command} on queue {queue}: Firework {fw_id} {what}, {len(jobs)} jobs "
            f"submitted ({', '.join(jobs) or 'none'}); its output goes to "
            f"{fireworks.queue_dir(queue) / 'jobs'}/<job>/launcher_*/al-loop-command.log"
        )
        if ready and not jobs and not fireworks.queue_jobs(queue):
            errors.print(
                f"[bold red]not submitted[/]: queue {queue} took no job (FireWorks' log above "
                f"says why; the scripts are in {fireworks.queue_dir(queue) / 'jobs'})",
                highlight=False,
            )
            raise typer.Exit(4)
        if not config.store.embedded:
            console.print(f"follow it with `al-loop status {source}`")
            return
        # the embedded server stops with the last al-loop process that uses it: keep it up
        console.print(
            "the dataset is the embedded server (on this host only: the job must run here too, "
            "or give the campaign a MongoDB server): waiting here for the job"
        )

        def missing() -> list[int]:
            return [] if fireworks.states(fw_ids=[fw_id]) == {"COMPLETED": 1} else [fw_id]

        def report(**figures: Any) -> None:
            console.print(f"  {_figures(figures)}", highlight=False)

        reason = wait_on_queue(session, queue, [fw_id], missing, report)
    if reason is not None:
        errors.print(f"[bold red]not finished[/]: {reason}", highlight=False)
        raise typer.Exit(4)
    console.print(f"done: `al-loop {' '.join(argv)}` shows its results")


@app.command()
def distil(
    ctx: typer.Context,
    campaign: CampaignFile,
    threads: Annotated[int | None, typer.Option(help="Torch threads for the fit.")] = None,
    allow_unconverged: Annotated[
        bool,
        typer.Option(
            "--allow-unconverged",
            help="Distil the last committee of a campaign that stopped "
            "without converging (its accuracy is then not the campaign's goal).",
        ),
    ] = False,
    queue: QueueOption = None,
) -> None:
    """Distil the converged committee into the fast student: the teacher's MD sample, the fit,
    the validation report per pressure bin, the student in the database and a LAMMPS input."""
    from al_loop.loop import distil_campaign

    config = _load(campaign)
    if queue is not None:
        return _submit_command(ctx, config, queue)
    start = time.perf_counter()
    with _user_errors():
        result = distil_campaign(
            config, progress=_progress, threads=threads, allow_unconverged=allow_unconverged
        )
    rep = result["report"]
    table = Table(
        "model",
        "against",
        "pressure bin (GPa)",
        "frames",
        "energy MAE (meV/atom)",
        "force RMSE (meV/Å)",
        "pressure MAE (GPa)",
        title=f"student of {config.name} (teacher: iteration {result['teacher_iteration']})",
    )
    for name in ("student_vs_teacher", "student_vs_labels", "teacher_vs_labels"):
        figures = rep.get(name)
        if not figures or not figures.get("n"):
            continue
        rows = [("all", figures), *figures.get("by_pressure", {}).items()]
        for bin_name, row in rows:
            force = row.get("force_rmse_eV_A")
            table.add_row(
                *name.split("_vs_"),
                bin_name,
                str(row["n"]),
                _num(row.get("energy_mae_meV_atom")),
                _num(None if force is None else 1000 * force),
                _num(row.get("pressure_mae_GPa")),
            )
    console.print(table)
    by_spread = rep.get("student_vs_teacher_by_spread") or {}
    if by_spread:
        parts = [
            f"{name} eV/Å: {_num(1000 * v['force_rmse_eV_A'])} meV/Å ({v['n']} frames)"
            for name, v in by_spread.items()
            if name != "worst_frame" and v.get("force_rmse_eV_A") is not None
        ]
        console.print("force RMSE against the teacher, by its own spread: " + "; ".join(parts))
    by_phase = rep.get("student_vs_teacher_by_phase") or {}
    if by_phase:
        parts = [
            f"{name} {_num(v.get('energy_mae_meV_atom'))} meV/atom, "
            f"{_num(v.get('pressure_mae_GPa'))} GPa ({v['n']})"
            for name, v in by_phase.items()
        ]
        console.print("against the teacher, by structure type: " + "; ".join(parts))
    verdicts = ", ".join(
        f"{k}: {'met' if v else 'missed' if v is not None else 'n/a'}"
        for k, v in rep["verdicts"].items()
    )
    console.print(f"targets ({rep['targets']}): {verdicts}")
    agreement = result["lammps_agreement"]["max_relative_difference"]
    console.print(
        f"LAMMPS and PyTorch agree to {agreement:.1e} (relative)"
        if agreement is not None
        else f"[yellow]not checked in LAMMPS[/]: {result['lammps_agreement']['reason']}"
    )
    console.print(
        f"student ({result['route']}) {', '.join(result['model_files'])} "
        f"(sha256 {result['sha256'][:12]}), LAMMPS input "
        f"{result['lammps_input']}; done in {time.perf_counter() - start:.1f} s"
    )


@app.command()
def phase(
    ctx: typer.Context,
    campaign: CampaignFile,
    threads: Annotated[int | None, typer.Option(help="Torch threads for the model.")] = None,
    queue: QueueOption = None,
    model: Annotated[
        str | None,
        typer.Option(help="Relax with student, teacher or oracle (default: phase.model)."),
    ] = None,
    check: Annotated[
        str | None,
        typer.Option(
            help="Then relax the same candidates with this model (oracle or teacher) and print "
            "both models' transitions side by side, with the RMS of their ΔH(P)."
        ),
    ] = None,
    target: Annotated[
        float, typer.Option(help="--check: a transition within this many GPa is met.")
    ] = 2.0,
) -> None:
    """Phase stability: every candidate relaxed on the pressure grid with the student (or the
    teacher, or the oracle: phase.model), enthalpy hulls, stable phases, transition pressures,
    plots."""
    from al_loop.loop import phase_campaign

    config = _load(campaign)
    for option, value in (("--model", model), ("--check", check)):
        if value is not None and value not in PHASE_MODELS:
            _fail(f"{option} {value!r}: give one of {', '.join(PHASE_MODELS)}")
    relaxing = model or config.phase.model
    if check is not None and check == relaxing:
        _fail(f"--check {check}: the map is already made with {check}; check it against another")
    if queue is not None:
        return _submit_command(ctx, config, queue)
    start = time.perf_counter()
    with _user_errors():
        result = phase_campaign(config, progress=_progress, threads=threads, model=relaxing)
    _print_phase(result)
    if check is not None:
        with _user_errors():
            reference = phase_campaign(config, progress=_progress, threads=threads, model=check)
        _print_phase(reference)
        _print_phase_check(relaxing, result, check, reference, target)
    folder = Path(result["files"]["hull_csv"]).parent
    console.print(f"tables and plots in {folder}; done in {time.perf_counter() - start:.1f} s")


PHASE_MODELS = ("student", "teacher", "oracle")


def _print_phase_check(
    name: str, result: dict, reference_name: str, reference: dict, target: float
) -> None:
    """The two maps' transitions side by side and their ΔH RMS; kept as check-<ref>.json."""
    from al_loop.phase.compare import delta_h_rms, transitions_against

    rows = transitions_against({name: result}, reference, target)
    table = Table(
        "composition",
        "from",
        "to",
        reference_name,
        name,
        "difference",
        "verdict",
        title=f"transitions: {name} against {reference_name} (target ±{target:g} GPa)",
    )
    for row in rows:
        off = row.get(f"{name}_minus_reference_GPa")
        verdict = (
            f"spurious ({name} only)"
            if row.get("spurious")
            else "met"
            if row.get(f"{name}_met")
            else "[yellow]missed[/]"
        )
        if row.get(f"{name}_from"):  # degenerate starting phases in the reference
            verdict += f" (from {row[f'{name}_from']}, degenerate in {reference_name})"
        table.add_row(
            row["formula"],
            row["from"],
            row["to"],
            _fmt(row["reference_GPa"], 2),
            _fmt(row.get(f"{name}_GPa"), 2),
            _fmt(off, 2),
            verdict,
        )
    console.print(table if rows else "no transition in either map on the grid")
    dh = delta_h_rms(result, reference)
    console.print(
        f"ΔH(P) of {name} against {reference_name} over the cells both relaxed, RMS (max) "
        "meV/atom [cells; of them outside what the teacher trusts]: "
        + "; ".join(
            f"{f} {v['rms_meV_atom']:.1f} ({v['max_meV_atom']:.1f}) [{v['n']}; {v['distrusted']}]"
            for f, v in dh.items()
        )
        if dh
        else f"ΔH(P): no composition with two phases that both {name} and {reference_name} relaxed"
    )
    folder = Path(result["files"]["hull_csv"]).parent
    (folder / f"check-{reference_name}.json").write_text(
        json.dumps({"transitions": rows, "delta_h": dh, "target_GPa": target}, indent=1)
    )


def _print_phase(result: dict) -> None:
    """A phase map: its model, stable phases, transitions, what was left out."""
    model = result["model"]
    by = (
        f"the {model['code']} oracle"
        if model["model"] == "oracle"
        else f"the {model['model']} of iteration {model['teacher_iteration']}"
    )
    console.print(
        f"{result['candidates']} candidates at {len(result['pressures_GPa'])} pressures "
        f"({result['pressures_GPa'][0]:g}-{result['pressures_GPa'][-1]:g} GPa), relaxed by {by}"
    )
    if "oracle_runs" in result:
        runs = result["oracle_runs"]
        console.print(
            f"{runs['run']} runs of {model['code']} now, {runs['recalled']} results recalled from "
            f"the dataset (each run is a label of campaign {runs['campaign']!r})"
        )
    stable = Table("P (GPa)", "on the hull", title="stable phases")
    for pressure, names in result["stable"].items():
        stable.add_row(pressure, ", ".join(names))
    console.print(stable)
    if result["transitions"]:
        found = Table("composition", "from", "to", "P (GPa)", title="transitions")
        for t in result["transitions"]:
            at = t["pressure_GPa"]
            lo, hi = t["bracket_GPa"]
            found.add_row(
                t["formula"],
                t["from"],
                t["to"],
                f"{at:.2f}" if at is not None else f"{lo:g}-{hi:g}",
            )
        console.print(found)
    else:
        console.print("no transition on the grid")
    if result["unconverged"]:
        console.print(
            f"[yellow]{len(result['unconverged'])} relaxations did not converge[/] (left out of "
            "the hulls; listed in phase.json)"
        )
    if result["teacher_unsure"]:
        gap = result["model_vs_teacher_enthalpy_meV_atom"]
        console.print(
            f"[yellow]{len(result['teacher_unsure'])} relaxed cells left out where the teacher "
            f"disagrees[/] (limits {result['teacher_limits']}; |H(model) - H(teacher)| median "
            f"{_num(gap['median_abs'])} meV/atom, max {_num(gap['max_abs'])})"
        )


def _numbers(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"give comma-separated numbers, e.g. 2000,3000; got {text!r}", param_hint=option
        ) from None
    if not values:
        raise typer.BadParameter("give at least one number", param_hint=option)
    return values


def _dynamics_progress(kind: str, result: dict) -> None:
    if kind == "liquid":
        at = result["settings"]
        ds = ", ".join(
            f"{e} {d['D_m2_s']:.3g} ± {d['D_error_m2_s']:.1g} m²/s"
            for e, d in result["diffusion"].items()
        )
        where = f"{at['temperature_K']:g} K {at['pressure_GPa']:g} GPa"
        console.print(f"{result['formula']} {where}: D {ds}")
    else:
        tried = ", ".join(f"{a['guess_K']:.0f} K {a['verdict']}" for a in result["attempts"])
        console.print(f"{result['element']} {result['settings']['pressure_GPa']:g} GPa: {tried}")


@app.command()
def melting(
    ctx: typer.Context,
    campaign: CampaignFile,
    element: Annotated[str, typer.Option(help="One of the campaign's elements.")],
    pressures: Annotated[str, typer.Option(help="Comma-separated, in GPa: 0,25,50.")],
    guess: Annotated[float, typer.Option(min=1, help="Near T_m at the lowest pressure (K).")],
    phase: Annotated[str, typer.Option(help="The crystal: fcc, bcc or hcp.")] = "fcc",
    repeat: Annotated[str, typer.Option(help="Unit cells along x,y,z (z long).")] = "4,4,10",
    steps: Annotated[int, typer.Option(min=100, help="Coexistence steps (NPH).")] = 20000,
    solid_steps: Annotated[int, typer.Option(min=0, help="NPT steps of the crystal.")] = 2000,
    melt_steps: Annotated[int, typer.Option(min=0, help="Steps melting the upper half.")] = 2000,
    timestep: Annotated[float, typer.Option(min=0.01, max=10, help="In fs.")] = 1.0,
    queue: QueueOption = None,
) -> None:
    """The melting line T_m(P) with the campaign's student in LAMMPS, by solid-liquid
    coexistence (half the crystal melted, then constant enthalpy and pressure): T_m with its
    error bar at each pressure; a run in which one phase took over is retried with the guess
    moved 15 %. Stored in the database, never repeated; a plot and a table in
    <workdir>/dynamics."""
    from al_loop.dynamics.runs import melting_campaign

    config = _load(campaign)
    cells = [int(v) for v in _numbers(repeat, "--repeat")]
    if len(cells) != 3 or min(cells) < 1:
        raise typer.BadParameter("give three positive integers, e.g. 4,4,10", param_hint="--repeat")
    _numbers(pressures, "--pressures")
    if queue is not None:
        return _submit_command(ctx, config, queue)
    settings = {
        "phase": phase,
        "repeat": tuple(cells),
        "steps": steps,
        "solid_steps": solid_steps,
        "melt_steps": melt_steps,
        "timestep_fs": timestep,
        "sample_every": max(1, steps // 200),
    }
    start = time.perf_counter()
    with _user_errors():
        result = melting_campaign(
            config,
            element,
            _numbers(pressures, "--pressures"),
            guess,
            settings,
            progress=_dynamics_progress,
        )
    table = Table("P (GPa)", "T_m (K)", "verdict", "guesses", title=f"melting line of {element}")
    for run in result["runs"]:
        tm = "-" if run["T_m_K"] is None else f"{run['T_m_K']:.0f} ± {run['T_m_error_K']:.0f}"
        guesses = ", ".join(f"{a['guess_K']:.0f}" for a in run["attempts"])
        table.add_row(f"{run['P_GPa']:.1f}", tm, run["verdict"], guesses)
    console.print(table)
    console.print(
        f"plot and table in {Path(result['files']['json']).parent}; "
        f"done in {time.perf_counter() - start:.1f} s"
    )


@app.command()
def liquid(
    ctx: typer.Context,
    campaign: CampaignFile,
    composition: Annotated[
        str, typer.Option(help="A formula of the campaign's elements: Fe, FeNi3, CaFe2.")
    ],
    temperatures: Annotated[str, typer.Option(help="Comma-separated, in K: 2000,3000.")],
    pressures: Annotated[str, typer.Option(help="Comma-separated, in GPa.")] = "0",
    atoms: Annotated[int, typer.Option(min=4, help="Atoms in the cell, at least.")] = 256,
    steps: Annotated[int, typer.Option(min=100, help="Sampled MD steps (NVT).")] = 10000,
    melt_steps: Annotated[int, typer.Option(min=0, help="NPT steps at twice T.")] = 2000,
    equilibration_steps: Annotated[int, typer.Option(min=0, help="NPT steps at T.")] = 2000,
    timestep: Annotated[float, typer.Option(min=0.01, max=10, help="In fs.")] = 1.0,
    queue: QueueOption = None,
) -> None:
    """Liquid properties with the campaign's student in LAMMPS: self-diffusion coefficients
    (from the mean square displacement, with error bars) and the radial distribution function
    at every (T, P). Each run is stored in the database as it ends and never repeated; plots
    and a table in <workdir>/dynamics."""
    from al_loop.dynamics.runs import liquid_campaign

    config = _load(campaign)
    temps, press = _numbers(temperatures, "--temperatures"), _numbers(pressures, "--pressures")
    if queue is not None:
        return _submit_command(ctx, config, queue)
    settings = {
        "steps": steps,
        "melt_steps": melt_steps,
        "equilibration_steps": equilibration_steps,
        "timestep_fs": timestep,
        "sample_every": max(1, steps // 200),
    }
    start = time.perf_counter()
    with _user_errors():
        result = liquid_campaign(
            config, composition, temps, press, atoms, settings, progress=_dynamics_progress
        )
    table = Table(
        "T (K)",
        "P (GPa)",
        "state",
        "V (Å³/atom)",
        "D (m²/s)",
        "g(r) peak (Å)",
        title=f"liquid {composition}",
    )
    for run in result["runs"]:
        ds = ", ".join(
            f"{e} {d['D_m2_s']:.3g} ± {d['D_error_m2_s']:.1g}" for e, d in run["diffusion"].items()
        )
        table.add_row(
            f"{run['T_K']:.0f}",
            f"{run['P_GPa']:.1f}",
            "liquid" if run["liquid"] else "[yellow]solid[/]",
            f"{run['volume_A3_atom']:.2f}",
            ds,
            f"{run['rdf_first_peak_A']:.2f}",
        )
    console.print(table)
    console.print(
        f"plots and table in {Path(result['files']['json']).parent}; "
        f"done in {time.perf_counter() - start:.1f} s"
    )


@app.command("foundation")
def foundation(
    out: Annotated[Path, typer.Argument(help="Where to write the .model file.")],
    elements: Annotated[str, typer.Option(help="Comma-separated, e.g. Ca,Fe,Ni.")],
    source: Annotated[
        str, typer.Option(help="The oracle that labels: chgnet, sevennet or emt.")
    ] = "chgnet",
    preset: Annotated[
        str | None,
        typer.Option(help="The source's preset (configs/presets/<source>/; default: its first)."),
    ] = None,
    pmax: Annotated[
        float,
        typer.Option(help="Highest pressure wanted, GPa (cut to the source's trusted range)."),
    ] = 50.0,
    structures: Annotated[int, typer.Option(help="Cells labelled by the source.")] = 500,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (default 30; the demo trains 60).")
    ] = None,
    channels: Annotated[
        int | None, typer.Option(help="MACE channels (default 16: sized for 2 cores).")
    ] = None,
    max_l: Annotated[
        int | None, typer.Option("--max-l", help="MACE's max_L, 0-3 (default 0).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    surrogates: Annotated[
        str | None,
        typer.Option(
            help="Elements the source labels in place of --elements, one for one, e.g. Al,Cu,Ni "
            "for Ca,Fe,Ni with EMT (which knows neither Ca nor Fe)."
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            help="A campaign file: store the source's labels in its dataset (campaign "
            "<name>/foundation, under the source's physics identity)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild if it exists.")] = False,
) -> None:
    """Pre-train a MACE foundation offline from a source (a universal potential whose weights
    ship in its wheel, or EMT): measures the source's trusted pressure range, labels prototypes,
    alloys, strained, rattled and MD cells across it, trains, and reports the held-out error
    per pressure bin. Writes OUT, its replay set (.replay.xyz), recipe (.recipe.json) and report
    (.report.json); an OUT built by the same recipe is kept."""
    from dataclasses import replace

    from al_loop.foundation import FOUNDATION_SETTINGS, FoundationRecipe, build_foundation
    from al_loop.foundation.build import is_current, report_file
    from calculators.oracles import available_oracles, available_presets

    if source not in available_oracles():
        _fail(f"--source {source!r}: not an oracle; known: {', '.join(available_oracles())}")
    presets = available_presets(source)
    chosen = preset or ("default" if "default" in presets else presets[0])
    if chosen not in presets and not chosen.endswith((".yaml", ".yml")):
        _fail(f"--preset {chosen!r}: {source} has {', '.join(presets)}")
    settings = FOUNDATION_SETTINGS
    if epochs is not None:
        if epochs < 1:
            _fail("--epochs must be at least 1")
        settings = replace(settings, max_epochs=epochs)
    if channels is not None:
        if channels < 1:
            _fail("--channels must be at least 1")
        settings = replace(settings, num_channels=channels)
    if max_l is not None:
        if not 0 <= max_l <= 3:
            _fail(f"--max-l {max_l}: give 0, 1, 2 or 3")
        settings = replace(settings, max_L=max_l)
    if structures < 20:
        _fail("--structures must be at least 20 (a tenth is held out)")
    if not 0 < pmax <= 1000:
        _fail(f"--pmax {pmax:g}: give a highest pressure in GPa, above 0 and at most 1000")
    recipe = FoundationRecipe(
        elements=tuple(_symbols(elements, "--elements")),
        source=source,
        preset=chosen,
        surrogates=tuple(_symbols(surrogates or "", "--surrogates")),
        pressure_max_GPa=pmax,
        n_structures=structures,
        seed=seed,
        settings=settings,
    )
    config = _load(store) if store is not None else None
    start = time.perf_counter()
    say = lambda line: console.print(line, markup=False)  # noqa: E731
    with _user_errors():
        if not force and is_current(out, recipe):
            console.print(f"{out} exists, built by the same recipe (use --force to rebuild)")
            if config is not None:
                _store_foundation_labels(config, recipe, report_file(out), say)
            return
        if out.is_file():
            console.print(f"{out} was built by another recipe: rebuilding it")
        report = build_foundation(recipe, out, progress=say)
        if config is not None:
            _store_foundation_labels(config, recipe, report_file(out), say)
    held = report.held_out
    console.print(
        f"foundation {out} from {source} ({'-'.join(recipe.elements)}, 0-"
        f"{report.pressure_range_GPa[1]:.0f} GPa, {report.labels['n']} labels) in "
        f"{time.perf_counter() - start:.0f} s"
    )
    table = Table(title="held-out source labels")
    for column in ("pressure bin (GPa)", "n", "energy meV/atom", "force eV/Å", "pressure GPa"):
        table.add_column(column)
    rows = {"all": held, **held.get("by_pressure", {})}
    for name, row in rows.items():
        table.add_row(
            name,
            str(row["n"]),
            _fmt(row.get("energy_mae_meV_atom")),
            _fmt(row.get("force_rmse_eV_A"), 3),
            _fmt(row.get("pressure_mae_GPa"), 2),
        )
    console.print(table)
    for line in report.not_covered:
        console.print(f"[yellow]not covered:[/] {line}")


def _store_foundation_labels(config: CampaignConfig, recipe: Any, report: Path, say: Any) -> None:
    """The source labels of a built foundation (its label cache) into the campaign's dataset."""
    from ase.io import read

    from al_loop.campaign import open_campaign
    from al_loop.foundation.dataset import store_source_labels

    cache = Path(json.loads(report.read_text())["labels"]["cache"])
    if not cache.is_file():
        _fail(f"the source labels {cache} are gone: rebuild with --force to store them")
    with open_campaign(config) as session:
        new = store_source_labels(
            session.store, recipe.make_source(), read(cache, index=":"), config.name, say
        )
    say(f"{new} source labels stored in the dataset of {config.name} ({config.name}/foundation)")


def _symbols(text: str, option: str) -> list[str]:
    """Element symbols from a comma-separated option; exit 2 naming the option if one is not."""
    from ase.data import chemical_symbols

    symbols = [e.strip() for e in text.split(",") if e.strip()]
    wrong = [s for s in symbols if s not in chemical_symbols[1:]]
    if wrong:
        _fail(f"{option}: {', '.join(wrong)} not element symbols (case matters: Fe)")
    return symbols


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@setup_app.command("pseudos")
def setup_pseudos(
    out: Annotated[Path, typer.Argument(help="The pseudopotential folder to fill.")] = Path(
        "pseudos"
    ),
    family: Annotated[str, typer.Option(help="fast (tests) or semicore (production).")] = "fast",
    check: Annotated[bool, typer.Option(help="Run a quick SCF with every file.")] = True,
) -> None:
    """Install Quantum ESPRESSO if missing (root), then fill OUT with Ca (generated by ld1.x),
    Fe and Ni (Debian) pseudopotentials, each checked (valence, a quick SCF)."""
    from calculators.oracles.pseudos import PseudoError, build_pseudo_dir

    start = time.perf_counter()
    try:
        chosen = build_pseudo_dir(out, family, check)
    except PseudoError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    for element, filename in chosen.items():
        console.print(f"{element}: {out / filename}")
    checked = "valence and a quick SCF" if check else "valence"
    console.print(
        f"{family} pseudopotentials in {out} ({checked} checked) in "
        f"{time.perf_counter() - start:.0f} s"
    )


@app.command("inputs")
def write_inputs(
    campaign: CampaignFile,
    structure: Annotated[Path, typer.Argument(help="Any file ase.io.read reads (POSCAR, cif).")],
    out: Annotated[Path, typer.Argument(help="The folder to write the inputs into.")],
) -> None:
    """Write the DFT inputs of one structure with the campaign's oracle settings, without
    running anything (pw.x: pw.in; VASP: INCAR, KPOINTS, POSCAR, POTCAR, POTCAR.spec)."""
    from ase.io import read

    from calculators.oracles import oracle_class

    config = _load(campaign)
    oracle = oracle_class(config.oracle.code)(config.oracle.settings)
    if not oracle.input_files:
        errors.print(
            f"[bold red]error:[/] {campaign}: oracle.code: {oracle.code!r} runs inside al-loop "
            "and writes no input files",
            highlight=False,
        )
        raise typer.Exit(2)
    with _user_errors():
        atoms = read(structure)
        try:
            folder = oracle.write_inputs(atoms, out)
        except RuntimeError as err:  # ASE: no POTCAR file for an element
            raise FileNotFoundError(" ".join(str(err).split())) from None
    written = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_file()))
    console.print(f"{atoms.get_chemical_formula()}: {written} in {folder}")


@app.command()
def launch(
    campaign: CampaignFile,
    workers: Annotated[int | None, typer.Option(help="Local rocket launchers.")] = None,
    rerun_fizzled: Annotated[
        bool,
        typer.Option(
            "--rerun-fizzled",
            help="Rerun the campaign's FIZZLED Fireworks first (only "
            "their structures that are not labelled ok).",
        ),
    ] = False,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            help="Submit jobs to this queue of the campaign file (up to its max_jobs in the "
            "queue; qlaunch rapidfire) instead of running local rockets, and return.",
        ),
    ] = None,
) -> None:
    """Run local rockets (rlaunch rapidfire) until no Firework of the campaign is ready, or
    with --queue submit queue jobs that run them."""
    from al_loop.campaign import open_campaign

    config = _load(campaign)
    if queue is not None:
        _check_queue(config, queue)
    with _user_errors(), open_campaign(config, create=False) as session:
        fireworks = session.fireworks
        recovered = fireworks.rerun_lost()
        if recovered:
            console.print(
                f"rerunning {len(recovered)} Fireworks left RUNNING by a launcher that is gone"
            )
        if rerun_fizzled:
            console.print(f"rerunning {len(fireworks.rerun_fizzled())} FIZZLED Fireworks")
        if queue is not None:
            jobs = fireworks.submit_to_queue(
                queue, fireworks.ready_for(config.queue_category(queue))
            )
            console.print(
                f"submitted {len(jobs)} jobs to {queue} ({', '.join(jobs) or 'none'}); in the "
                f"queue: {fireworks.queue_jobs(queue)}; Fireworks: {fireworks.states()}"
            )
            return
        n = workers or config.launcher.workers
        codes = fireworks.run_local(n)
        console.print(f"{n} launchers exited with {codes}; Fireworks: {fireworks.states()}")


@app.command()
def status(campaign: CampaignFile) -> None:
    """Where a campaign stands: every stage it recorded, with its figures, its Fireworks by
    state, and its jobs in each queue."""
    from al_loop.campaign import open_campaign

    config = _load(campaign)
    with _user_errors(), open_campaign(config, create=False) as session:
        doc = session.log.document()
        console.print(
            f"campaign [bold]{config.name}[/]: iteration {doc['iteration']}, "
            f"last stage {doc['stage']}, updated {doc['updated_at']:%Y-%m-%d %H:%M:%S}"
        )
        with _one_line_each():
            for record in session.log.records():
                figures = _figures(record.get("summary") or {})
                wall = record.get("wall_s")
                console.print(
                    f"iteration {record['iteration']} [cyan]{record['stage']}[/]"
                    + ("" if wall is None else f" ({wall:.0f} s)")
                    + f" {record['finished_at']:%m-%d %H:%M}"
                    + (f": {figures}" if figures else ""),
                    highlight=False,
                )
        changes = len(doc.get("physics_history") or [])
        if changes:
            console.print(f"[yellow]label physics changed {changes} time(s)[/] (physics_history)")
        finished = doc.get("finished")
        if finished:
            console.print(f"finished: {finished['reason']} at iteration {finished['iteration']}")
        console.print(f"Fireworks: {session.fireworks.states()}")
        for stage, states in sorted(session.fireworks.states_by_stage().items()):
            console.print(f"  {stage} Fireworks: {states}")
        for name in config.queues:
            try:
                jobs = session.fireworks.queue_jobs(name)
            except RuntimeError as err:  # not a login node of that queue
                jobs = {"unknown": str(err)}
            console.print(f"queue {name}: {len(jobs)} jobs {jobs}", highlight=False)


def _query(
    campaign_name: str | None,
    iteration: int | None,
    elements: str | None,
    chemsys: str | None,
    pmin: float | None,
    pmax: float | None,
    status: str | None,
):
    """A LabelQuery from CLI options; a bad option exits 2 naming it and what is allowed."""
    from ase.data import chemical_symbols

    from calculators.oracles import STATUSES
    from database import LabelQuery

    def bad(option: str, message: str) -> typer.Exit:
        errors.print(f"[bold red]error:[/] {option}: {message}", highlight=False)
        return typer.Exit(2)

    statuses = status.split(",") if status else None
    allowed = (*STATUSES, "running")
    for value in statuses or []:
        if value not in allowed:
            raise bad("--status", f"{value!r} is not a label status; use {', '.join(allowed)}")
    symbols = [*(elements.split(",") if elements else []), *(chemsys.split("-") if chemsys else [])]
    for symbol in symbols:
        if symbol not in chemical_symbols[1:]:
            raise bad(
                "--elements/--chemsys",
                f"{symbol!r} is not an element symbol (symbols are case-sensitive: Fe, not fe)",
            )
    if pmin is not None and pmax is not None and pmin > pmax:
        raise bad("--pmin/--pmax", f"the range {pmin}..{pmax} GPa is empty")
    return LabelQuery(
        campaign=campaign_name,
        iteration=iteration,
        elements=elements.split(",") if elements else None,
        chemsys=chemsys,
        pressure_min_GPa=pmin,
        pressure_max_GPa=pmax,
        status=statuses[0] if statuses and len(statuses) == 1 else statuses,
    )


IterationOpt = Annotated[int | None, typer.Option(help="Only this iteration.")]
ElementsOpt = Annotated[str | None, typer.Option(help="Containing all of these, e.g. Fe,Ni.")]
ChemsysOpt = Annotated[str | None, typer.Option(help="Exactly this system, e.g. Ca-Fe-Ni.")]
PminOpt = Annotated[float | None, typer.Option("--pmin", help="Minimum pressure (GPa).")]
PmaxOpt = Annotated[float | None, typer.Option("--pmax", help="Maximum pressure (GPa).")]
StatusOpt = Annotated[
    str | None,
    typer.Option(help="ok, unconverged, killed, input_error, crashed, running (comma-separated)."),
]
AllOpt = Annotated[bool, typer.Option("--all-campaigns", help="Labels of every campaign.")]


@db_app.command("stats")
def db_stats(
    campaign: CampaignFile, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Counts of structures and labels by status, chemical system and iteration."""
    from al_loop.campaign import open_campaign

    config = _load(campaign)
    with _user_errors(), open_campaign(config, create=False) as session:
        stats = session.store.stats(config.name)
    if as_json:
        console.print_json(json.dumps(stats, default=str))
    else:
        _print_stats(f"dataset of {config.name}", stats)


@db_app.command("query")
def db_query(
    campaign: CampaignFile,
    iteration: IterationOpt = None,
    elements: ElementsOpt = None,
    chemsys: ChemsysOpt = None,
    pmin: PminOpt = None,
    pmax: PmaxOpt = None,
    status: StatusOpt = None,
    all_campaigns: AllOpt = False,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
    wide: Annotated[
        bool, typer.Option("--wide", help="One line per label, whatever the terminal's width.")
    ] = False,
) -> None:
    """List labels by campaign, iteration, elements, pressure range and status."""
    from al_loop.campaign import open_campaign

    config = _load(campaign)
    query = _query(
        None if all_campaigns else config.name, iteration, elements, chemsys, pmin, pmax, status
    )
    with _user_errors(), open_campaign(config, create=False) as session:
        total = session.store.count_labels(query)
        docs = list(session.store.find_labels(query, limit=limit, with_arrays=False))
    if as_json:
        for doc in docs:
            sys.stdout.write(json.dumps(doc, default=str) + "\n")
        return
    table = _labels_table(docs, total)
    if wide:  # as wide as the table wants, whatever the terminal (or pipe) says
        natural = Console(width=1_000_000).measure(table).maximum
        Console(width=natural).print(table)
    else:
        console.print(table)


def _labels_table(docs: list[dict[str, Any]], total: int) -> Table:
    """The labels as a table whose numbers are never cut: number columns keep their full
    width; the id, formula and iterations wrap onto more lines when the terminal is narrow."""

    def fmt(doc: dict[str, Any], key: str, spec: str) -> str:
        return "" if doc.get(key) is None else format(doc[key], spec)

    rows = [
        (
            str(doc["_id"]),
            doc.get("formula", ""),
            doc["status"],
            fmt(doc, "energy_per_atom_eV", ".4f"),
            fmt(doc, "pressure_GPa", ".1f"),
            fmt(doc, "max_force_eV_A", ".3f"),
            doc.get("code", ""),
            ",".join(str(r["iteration"]) for r in doc.get("requests", [])),
        )
        for doc in docs
    ]
    table = Table(
        title=f"{total} labels match ({len(docs)} shown)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    headers = ("label", "formula", "status", "E/atom eV", "P GPa", "max F eV/Å", "code", "it")
    numbers = {3, 4, 5}
    for index, header in enumerate(headers):
        widest = max((len(row[index]) for row in rows), default=0)
        if index in numbers:  # never cut: as wide as the widest value, right-aligned
            table.add_column(header, justify="right", no_wrap=True, min_width=widest)
        else:
            table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


@db_app.command("export")
def db_export(
    campaign: CampaignFile,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    fmt: Annotated[
        str, typer.Option("--format", help="extxyz or ase-db (default: from the suffix).")
    ] = "",
    iteration: IterationOpt = None,
    elements: ElementsOpt = None,
    chemsys: ChemsysOpt = None,
    pmin: PminOpt = None,
    pmax: PmaxOpt = None,
    status: StatusOpt = "ok",
    all_campaigns: AllOpt = False,
) -> None:
    """Export labels (default: the ok ones) to extxyz or an ASE database."""
    from al_loop.campaign import open_campaign
    from database import export_ase_db, export_extxyz

    config = _load(campaign)
    kind = fmt or ("ase-db" if output.suffix in (".db", ".json") else "extxyz")
    if kind not in ("extxyz", "ase-db"):
        errors.print(f"error: --format {kind!r}: use extxyz or ase-db")
        raise typer.Exit(2)
    query = _query(
        None if all_campaigns else config.name, iteration, elements, chemsys, pmin, pmax, status
    )
    with _user_errors(), open_campaign(config, create=False) as session:
        writer = export_extxyz if kind == "extxyz" else export_ase_db
        count = writer(session.store, query, output)
    console.print(f"wrote {count} labels to {output} ({kind})")


@db_app.command("serve")
def db_serve(campaign: CampaignFile) -> None:
    """Keep the campaign's embedded server running (for lpad, rlaunch, qlaunch) until Ctrl-C."""
    from al_loop.campaign import open_campaign
    from database import redact

    config = _load(campaign)
    with _user_errors(), open_campaign(config, create=False) as session:
        files = session.fireworks
        console.print(
            f"serving {session.store.database_name} at {redact(session.store.uri)}; "
            f"FireWorks: lpad -l {files.launchpad_file}; "
            f"rlaunch -l {files.launchpad_file} -w {files.fworker_file} rapidfire"
        )
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        try:
            while not stop["now"]:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


@db_app.command("trust-models")
def db_trust_models(
    campaign: CampaignFile,
    yes: Annotated[bool, typer.Option("--yes", help="Sign them (else only list them).")] = False,
) -> None:
    """Sign the campaign's model files that this machine's key does not sign (trained on
    another machine, or stored before signatures). Loading a model can run code: do it only
    if you trust everyone who can write to this database."""
    from al_loop.campaign import open_campaign
    from database.model_signing import key_file

    config = _load(campaign)
    with _user_errors(), open_campaign(config, create=False) as session:
        found = session.store.trust_models(config.name, sign_now=yes)
    if not found:
        console.print(f"every model of {config.name} is signed with {key_file()}")
    elif yes:
        console.print(f"signed {len(found)} model files with {key_file()}: {', '.join(found)}")
    else:
        console.print(
            f"{len(found)} model files are not signed with {key_file()}: {', '.join(found)}; "
            "add --yes to sign them"
        )


def main() -> None:
    """Console-script entry point (SIGTERM exits cleanly: servers stopped, data kept)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("TQDM_DISABLE", "1")  # FireWorks' bulk insert draws a progress bar
    warnings.filterwarnings("ignore", category=FutureWarning, module="e3nn")
    app()


if __name__ == "__main__":
    main()
