"""The campaign file: one YAML file, a pydantic schema, and errors that say what to do.

``load_campaign(path)`` reads the file, resolves relative paths against the file's folder and
returns a :class:`CampaignConfig`, or raises one :class:`ConfigError` naming the file, the key
path (``system.elements[1]``) and the fix. Units are part of the key names (``pressures_GPa``),
values are plain numbers. Loading never writes anything.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from ase.data import atomic_names, chemical_symbols
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from al_loop.config_errors import (
    ConfigError,
    Problem,
    config_error,
    did_you_mean,
    explain_all,
    format_loc,
    read_yaml,
    redact,
    show,
)
from al_loop.evaluation import PRESSURE_BINS_GPA
from al_loop.phase.candidates import PROTOTYPES
from al_loop.seeds import CELL_ATOMS, file_seeds
from al_loop.selection import DEFAULT_STRATEGY, STRATEGIES
from calculators.models.mace_train import TrainSettings
from calculators.oracles import OracleSettings, available_oracles, available_presets, oracle_class
from calculators.oracles.registry import preset_path, preset_settings
from calculators.oracles.setting_types import Bool, Float, Int  # strict: no "50" -> 50
from calculators.yaml_files import YamlTooLarge

__all__ = [
    "CampaignConfig",
    "CommitteeConfig",
    "ConfigError",
    "ExplorationConfig",
    "LauncherConfig",
    "OracleConfig",
    "QueueConfig",
    "SeedsConfig",
    "SelectionConfig",
    "StoreConfig",
    "SystemConfig",
    "load_campaign",
]

#: File suffixes (and VASP file names) accepted in ``seeds.files``.
SEED_SUFFIXES = (".cif", ".xyz", ".extxyz", ".vasp", ".traj")
SEED_NAMES = ("POSCAR", "CONTCAR")
#: Element symbols (ASE's table without the dummy ``X``).
ELEMENTS = frozenset(chemical_symbols[1:])
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ---------------------------------------------------------------------------------------------
# Small validators
# ---------------------------------------------------------------------------------------------


def _base_dir(info: ValidationInfo) -> Path:
    """The folder relative paths are resolved against: the campaign file's, else the cwd."""
    base = (info.context or {}).get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def _resolve(path: str | Path, info: ValidationInfo) -> Path:
    """``path`` made absolute (``~`` expanded, ``..`` folded) against the campaign's folder."""
    p = Path(path).expanduser()
    return Path(os.path.abspath(p if p.is_absolute() else _base_dir(info) / p))


def _must_be_file(given: str | Path, info: ValidationInfo) -> Path:
    """The resolved path of an existing file, or a ValueError that says where it was looked for."""
    path = _resolve(given, info)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file")
    if not path.is_file():
        where = ""
        if not Path(given).expanduser().is_absolute():
            where = f" (relative paths start at the campaign file's folder, {_base_dir(info)})"
        raise ValueError(f"file not found: {path}{where}")
    return path


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"invalid name {value!r}: use letters, digits, '_', '.' and '-', starting with a "
            "letter or digit (the name becomes a folder and a database key)"
        )
    return value


def _check_element(value: str) -> str:
    if value in ELEMENTS:
        return value
    hint = " (use symbols such as Cu, Ni, Al)"
    names = {name.lower(): sym for sym, name in zip(chemical_symbols, atomic_names, strict=True)}
    parts = [p for p in re.split(r"[\s,;-]+", value.strip()) if p]
    if value.strip().capitalize() in ELEMENTS:
        hint = f"; did you mean {value.strip().capitalize()!r}? (symbols are case-sensitive)"
    elif value.strip().lower() in names and value.strip():
        hint = f"; did you mean {names[value.strip().lower()]!r}? (give symbols, not names)"
    elif len(parts) > 1 and all(p in ELEMENTS for p in parts):
        hint = f"; give one symbol per item: [{', '.join(parts)}]"
    raise ValueError(f"unknown element symbol {value!r}{hint}")


def _unique(values: list[Any]) -> list[Any]:
    first: dict[Any, int] = {}
    for i, value in enumerate(values):
        if value in first:
            raise Problem((i,), f"duplicate value {value!r} (already given at [{first[value]}])")
        first[value] = i
    return values


def _none_is_empty(value: Any) -> Any:
    """A section written as ``seeds:`` with nothing under it means all defaults."""
    return {} if value is None else value


def _pair(value: Any) -> Any:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"expected two numbers [lo, hi], got {show(value)}")
    return value


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"lo must be <= hi, got [{value[0]}, {value[1]}]; write [lo, hi]")
    return value


def _seed_file(value: Path, info: ValidationInfo) -> Path:
    name = Path(value).name
    if Path(name).suffix.lower() not in SEED_SUFFIXES and not name.startswith(SEED_NAMES):
        raise ValueError(
            f"{name!r} is not a structure file: use {', '.join(SEED_SUFFIXES)} "
            "or a VASP file named POSCAR/CONTCAR"
        )
    return _must_be_file(value, info)


def _has_password(uri: str) -> bool:
    head = uri.split("://", 1)[-1].split("?", 1)[0]
    return "@" in head and ":" in head.rsplit("@", 1)[0]


NonEmptyStr = Annotated[str, Field(min_length=1)]
_NonEmpty = Field(min_length=1)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)


def _section() -> Any:
    """A section that may be left out (or left empty): all defaults, validated like given ones."""
    return Field(default_factory=dict, validate_default=True)


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


class SystemConfig(_Section):
    """The chemical system and the (P, T) window to explore."""

    elements: Annotated[
        list[Annotated[str, AfterValidator(_check_element)]], _NonEmpty, AfterValidator(_unique)
    ]
    pressures_GPa: Annotated[
        list[Annotated[Float, Field(ge=0, le=1000)]], _NonEmpty, AfterValidator(_unique)
    ] = Field(default_factory=lambda: [0.0])
    temperatures_K: Annotated[
        list[Annotated[Float, Field(gt=0, le=20000)]], _NonEmpty, AfterValidator(_unique)
    ] = Field(default_factory=lambda: [300.0])


class SeedsConfig(_Section):
    """Initial structures (iteration 0): random substitutions on prototypes, plus files."""

    prototypes: Annotated[
        list[Literal["fcc", "bcc", "hcp", "sc"]], _NonEmpty, AfterValidator(_unique)
    ] = Field(default_factory=lambda: ["fcc", "bcc", "hcp"])
    n_structures: Annotated[Int, Field(ge=0)] = 20
    max_atoms: Annotated[Int, Field(ge=1)] = 16
    rattle_A: Annotated[Float, Field(ge=0, lt=0.5)] = 0.05
    volume_scale_range: Annotated[
        tuple[Annotated[Float, Field(ge=0.3, le=1.5)], Annotated[Float, Field(ge=0.3, le=1.5)]],
        BeforeValidator(_pair),
        AfterValidator(_ordered),
    ] = (0.75, 1.05)
    #: Also seed every prototype candidate of the phase stage (phase.prototypes on these
    #: elements) this many times, at volumes spread over volume_scale_range: the committee then
    #: learns the very cells whose enthalpies the phase map compares (0: none).
    phase_candidates: Annotated[Int, Field(ge=0)] = 0
    files: list[Annotated[Path, AfterValidator(_seed_file)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_seeds(self) -> SeedsConfig:
        if self.n_structures == 0 and not self.files:
            raise Problem(
                ("n_structures",), "no initial structures: set n_structures > 0 or list files"
            )
        largest = max(self.prototypes, key=CELL_ATOMS.__getitem__)
        if self.n_structures > 0 and self.max_atoms < CELL_ATOMS[largest]:
            raise Problem(
                ("max_atoms",),
                f"must be at least {CELL_ATOMS[largest]}, the atoms of the smallest {largest} "
                f"cell (seeds.prototypes); got {self.max_atoms}",
            )
        return self


class OracleConfig(_Section):
    """The reference code that labels structures, its settings preset and overrides."""

    code: str = "emt"
    preset: NonEmptyStr = "default"
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("code")
    @classmethod
    def _known_code(cls, code: str) -> str:
        known = available_oracles()
        if code not in known:
            raise ValueError(
                f"unknown oracle code {code!r}{did_you_mean(code, known)}; "
                f"available: {', '.join(known)}"
            )
        return code

    @field_validator("preset")
    @classmethod
    def _preset_file_relative(cls, preset: str, info: ValidationInfo) -> str:
        if Path(preset).suffix in {".yaml", ".yml"}:  # a file of its own, not a shipped name
            return str(_resolve(preset, info))
        return preset

    _settings: OracleSettings | None = PrivateAttr(default=None)

    @property
    def settings(self) -> OracleSettings:
        """The code's typed settings: the preset merged with the overrides, resolved once when
        the campaign file is loaded."""
        assert self._settings is not None
        return self._settings

    @model_validator(mode="after")
    def _resolve_settings(self, info: ValidationInfo) -> OracleConfig:
        path = preset_path(self.code, self.preset)
        if not path.is_file():
            shipped = available_presets(self.code)
            raise Problem(
                ("preset",),
                f"no preset {self.preset!r} for oracle {self.code!r} (looked for {path})"
                f"{did_you_mean(self.preset, shipped)}; "
                f"available presets: {', '.join(shipped) or 'none'}",
            )
        Settings = oracle_class(self.code).Settings
        overrides = dict(self.overrides)
        for key in Settings.path_fields & set(overrides):  # relative to the campaign file
            if isinstance(overrides[key], str):
                overrides[key] = str(_resolve(overrides[key], info))
        try:
            merged = preset_settings(self.code, self.preset, overrides)
            self._settings = Settings.model_validate(merged)
        except yaml.YAMLError as exc:
            raise Problem(("preset",), f"{path} is not valid YAML: {exc}") from None
        except YamlTooLarge as exc:
            raise Problem(("preset",), f"{path}: {exc}") from None
        except ValidationError as exc:
            items = []
            for loc, message in explain_all(exc, Settings, f"in the {self.code} settings"):
                if loc and loc[0] in self.overrides:
                    items.append((("overrides", *loc), message))
                else:  # the preset's own value
                    items.append((("preset",), f"{path}: {format_loc(loc)}: {message}"))
            raise Problem(*items[0], items=items) from None
        return self


_TRAINING = TrainSettings()  # the trainer's defaults are the campaign file's


class CommitteeConfig(_Section):
    """The MACE committee: size, starting point, and training (mace-torch's ``run_train``)."""

    n_models: Annotated[Int, Field(ge=2)] = 4
    #: A named foundation model (``medium-mpa-0``) or a path to a ``.model`` file; null: none.
    foundation_model: NonEmptyStr | None = None
    #: Pre-training structures (extxyz) replayed in multi-head fine-tuning; null: single head.
    replay_file: Annotated[Path, AfterValidator(_must_be_file)] | None = None
    replay_samples: Annotated[Int, Field(ge=1)] = _TRAINING.replay_samples
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float64"
    max_epochs: Annotated[Int, Field(ge=1)] = _TRAINING.max_epochs
    batch_size: Annotated[Int, Field(ge=1)] = _TRAINING.batch_size
    learning_rate: Annotated[Float, Field(gt=0)] = _TRAINING.learning_rate
    #: Loss weights (mace's ``stress`` loss): per-atom energy (eV), force components (eV/Å) and
    #: stress components (eV/Å³), each squared. Balanced, energies and pressures are learned as
    #: well as forces (docs/design.md); ``swa: true`` in mace_args adds mace's stage two.
    energy_weight: Annotated[Float, Field(ge=0)] = _TRAINING.energy_weight
    forces_weight: Annotated[Float, Field(ge=0)] = _TRAINING.forces_weight
    stress_weight: Annotated[Float, Field(ge=0)] = _TRAINING.stress_weight
    #: Exponential moving average of the weights while training (null: off); see docs/design.md.
    ema_decay: Annotated[Float, Field(gt=0, lt=1)] | None = _TRAINING.ema_decay
    #: Isolated-atom energies of a fine-tuned model: ``estimated`` (fitted so the foundation's
    #: predictions match the labels on average: the oracle's energy reference, which may differ
    #: from the foundation's) or the ``foundation``'s own.
    e0s: Literal["estimated", "foundation"] = _TRAINING.e0s
    bootstrap: Bool = True
    #: Members trained at the same time (null: one per CPU core up to n_models on cpu, one on
    #: cuda); the cores are shared out among them.
    parallel_trainings: Annotated[Int, Field(ge=1)] | None = None
    #: Fraction of labels never trained on: the committee's error is measured on them.
    held_out_fraction: Annotated[Float, Field(ge=0, lt=0.5)] = 0.1
    #: Held-out labels of iterations up to this one form the fixed set every committee is
    #: measured on (the learning curve); later held-out labels are reported as new slices.
    held_out_fixed_after: Annotated[Int, Field(ge=0)] = 1
    #: Edges of the pressure bins that errors are reported in (GPa; the last bin is open).
    error_pressure_bins_GPa: Annotated[list[Float], _NonEmpty] = Field(
        default_factory=lambda: list(PRESSURE_BINS_GPA)
    )
    #: Architecture when training from scratch (a fine-tuned model keeps its foundation's).
    num_channels: Annotated[Int, Field(ge=1)] = _TRAINING.num_channels
    max_L: Annotated[Int, Field(ge=0, le=3)] = _TRAINING.max_L
    r_max_A: Annotated[Float, Field(gt=0, le=12)] = _TRAINING.r_max_A
    #: Further ``mace_run_train`` options, without the leading dashes (e.g. ``swa: true``).
    mace_args: dict[str, Any] = Field(default_factory=dict)
    #: A name in ``queues`` (a GPU partition): members train as Fireworks in its jobs, one
    #: member a Firework, ``device`` resolved there; null: in the `al-loop run` process.
    queue: NonEmptyStr | None = None

    @field_validator("foundation_model")
    @classmethod
    def _model_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and ("/" in value or "\\" in value or value.endswith(".model")):
            try:
                return str(_must_be_file(value, info))
            except ValueError as err:
                raise ValueError(
                    f"{err}; give a MACE .model file or a named model (medium-mpa-0), or build "
                    "one offline with `al-loop foundation PATH --elements A,B --source chgnet`"
                ) from None
        if value is not None:
            from calculators.models.mace_train import foundation_names

            known = foundation_names()
            if value not in known:
                raise ValueError(
                    f"{value!r} is neither a file nor a MACE-MP model{did_you_mean(value, known)};"
                    f" give the path of a .model file, or one of: {', '.join(known)}"
                )
        return value

    @field_validator("error_pressure_bins_GPa")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError(f"must be in ascending order, e.g. [0, 10, 50]; got {value}")
        return value

    @field_validator("mace_args")
    @classmethod
    def _known_mace_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            return value
        from calculators.models.mace_train import OWN_OPTIONS, train_options

        known = train_options()
        for key in value:
            if key in OWN_OPTIONS:
                raise ValueError(f"{key!r} is set by al-loop; set {OWN_OPTIONS[key]} instead")
            if key not in known:
                raise ValueError(
                    f"{key!r} is not an option of mace_run_train{did_you_mean(key, known)}"
                )
        return value


class ExplorationConfig(_Section):
    """Committee MD at every (T, P) of the system's window."""

    #: nvt (Langevin), npt (Berendsen), heat (npt with T ramped to heat_factor x T)
    ensembles: Annotated[
        list[Literal["nvt", "npt", "heat"]], _NonEmpty, AfterValidator(_unique)
    ] = Field(default_factory=lambda: ["npt"])
    steps: Annotated[Int, Field(ge=1)] = 1000
    timestep_fs: Annotated[Float, Field(gt=0, le=5)] = 1.0
    frame_interval: Annotated[Int, Field(ge=1)] = 10
    max_spread_eV_A: Annotated[Float, Field(gt=0)] = 1.0
    heat_factor: Annotated[Float, Field(gt=1, le=10)] = 2.0
    #: Where trajectories start: the ``seeds`` (labelled structures of iteration 0, as DP-GEN
    #: starts from its initial configurations every iteration: the explored distribution stays
    #: the same, so accurate fractions compare across iterations) or any ``labelled`` structure.
    starts: Literal["seeds", "labelled"] = "seeds"
    #: What drives the dynamics: ``first`` member (DP-GEN's way; the committee is evaluated on
    #: recorded frames only; benchmarks/training_bench.py) or the committee ``mean``.
    driver: Literal["first", "mean"] = "first"
    #: Trajectories per (ensemble, T, P), each from a structure drawn from `starts`.
    trajectories_per_condition: Annotated[Int, Field(ge=1)] = 1
    #: Precision of the committee during MD (training uses committee.dtype).
    dtype: Literal["float32", "float64"] = "float32"

    @model_validator(mode="after")
    def _frames(self) -> ExplorationConfig:
        if self.frame_interval > self.steps:
            raise Problem(
                ("frame_interval",),
                f"must be <= steps ({self.steps}), or no frame is ever kept; "
                f"got {self.frame_interval}",
            )
        return self


class StudentConfig(_Section):
    """The fast student distilled from the converged committee (``al-loop distil``): its
    shape, the teacher's MD sample it learns from, and its fit."""

    #: How LAMMPS runs it: ``pair``, the project's pair style (fastest; a plugin built by the
    #: set-up) or ``mliap``, ML-IAP nn on LAMMPS's SNAP descriptor (any LAMMPS with ML-IAP).
    route: Literal["pair", "mliap"] = "pair"
    #: Route ``mliap``: the SNAP descriptor's band limit (6: 30 descriptors, 8: 55).
    twojmax: Annotated[Int, Field(ge=0, le=12)] = 6
    #: Descriptor: cutoff (Å; both routes), Chebyshev radial basis, trained radial channels,
    #: angular degree, and the basis' decay exponent (1/x^decay: near neighbours weigh more).
    cutoff: Annotated[Float, Field(gt=1, le=12)] = 5.0
    n_basis: Annotated[Int, Field(ge=1, le=32)] = 8
    n_channels: Annotated[Int, Field(ge=1, le=32)] = 8
    lmax: Annotated[Int, Field(ge=0, le=6)] = 3
    decay: Annotated[Int, Field(ge=0, le=12)] = 4
    hidden: Annotated[list[Annotated[Int, Field(ge=1)]], _NonEmpty] = Field(
        default_factory=lambda: [32, 32]
    )
    #: The teacher's MD sample: ensembles (``heat`` melts), steps and frames per trajectory,
    #: trajectories per (ensemble, T, P), and the smallest cell (starts are repeated up to it).
    sample_ensembles: Annotated[
        list[Literal["nvt", "npt", "heat"]], _NonEmpty, AfterValidator(_unique)
    ] = Field(default_factory=lambda: ["npt", "heat"])
    sample_steps: Annotated[Int, Field(ge=1)] = 2000
    sample_frame_interval: Annotated[Int, Field(ge=1)] = 20
    sample_trajectories_per_condition: Annotated[Int, Field(ge=1)] = 2
    sample_min_atoms: Annotated[Int, Field(ge=1)] = 32
    #: The phase stage's candidates (phase.prototypes and phase.files) join the sample: each at
    #: this many volumes, evenly spaced between those where the teacher's own P(V) reaches the
    #: lowest and highest of the campaign's and the phase grid's pressures (widened by a fifth
    #: of their span and 2 GPa), ideal and rattled by seeds.rattle_A, labelled by the teacher
    #: (0: none). The student relaxes them later; MD of the campaign's cells never shows it a
    #: perfect Laves or CaCu5 crystal, nor calcium at its 20 GPa volume.
    sample_crystal_volumes: Annotated[Int, Field(ge=0, le=50)] = 6
    #: Each crystal frame weighs this in the fit against an MD frame's 1: a 1-4-atom ideal cell
    #: has no forces to fit, and its enthalpy is what the phase map compares.
    crystal_weight: Annotated[Float, Field(ge=0)] = 1.0
    #: Frames where the committee's force spread exceeds this are left out (the teacher is
    #: unsure there).
    max_teacher_spread_eV_A: Annotated[Float, Field(gt=0)] = 0.3
    #: The campaign's training labels join the fit, each weighing label_weight against a
    #: teacher frame's 1, with their DFT (oracle) results (``dft``) or the teacher's at the
    #: same structures (``teacher``: one target, the teacher, everywhere). Measured on the
    #: demo's sample, 3 seeds: 9.6 meV/atom, 110 meV/Å, 0.67 GPa against the teacher with
    #: ``teacher``; 15.0, 125, 1.27 with ``dft`` (docs/benchmarks.md).
    label_source: Literal["dft", "teacher"] = "teacher"
    label_weight: Annotated[Float, Field(ge=0)] = 5.0
    #: Share of the sample held out for the validation report.
    test_fraction: Annotated[Float, Field(gt=0, lt=0.5)] = 0.1
    #: The fit: Adam, the rate decaying exponentially from learning_rate to final_learning_rate
    #: (small batches, many steps). Defaults measured on the demo's sample: 300 epochs from 3e-3
    #: met the energy and pressure targets; from 1e-2 the fit diverged (docs/validation.md).
    epochs: Annotated[Int, Field(ge=1)] = 300
    batch_size: Annotated[Int, Field(ge=1)] = 4
    learning_rate: Annotated[Float, Field(gt=0)] = 3e-3
    final_learning_rate: Annotated[Float, Field(gt=0)] = 1e-4
    #: Loss weights on squared errors of energy per atom (eV), force components (eV/Å) and
    #: stress (eV/Å^3). Measured on the demo's sample: from 100/1/1000 to 100/2/500 the energy
    #: error fell 3.7 -> 2.6 meV/atom and the force error on the labels 77 -> 58 meV/Å.
    energy_weight: Annotated[Float, Field(ge=0)] = 100.0
    force_weight: Annotated[Float, Field(ge=0)] = 2.0
    stress_weight: Annotated[Float, Field(ge=0)] = 500.0
    #: Cut the gradient's norm to this at each step (null: never). The fit records each
    #: epoch's largest norm and how many steps were cut.
    clip_grad_norm: Annotated[Float, Field(gt=0)] | None = None
    #: Stop the fit after this many epochs without a better validation loss (null: run every
    #: epoch); the best epoch's model is kept either way. Off by default: with the rate still
    #: decaying, the validation loss can stall for 50 epochs and improve again. On the demo's
    #: sample, seed 0, 150 epochs: patience 50 stopped at epoch 116 (best 65) with 10.1
    #: meV/atom and 142 meV/Å against the teacher; every epoch run gave 4.47 and 116 (best 149).
    patience: Annotated[Int, Field(ge=1)] | None = None
    #: Validate and keep an exponential moving average of the weights, updated each step with
    #: this decay (null: the raw weights). Measured on the demo's sample, 3 seeds: 0.99 gave
    #: 6.9-9.2 meV/atom against the teacher, the raw weights 8.0-11.0 (lower at every seed).
    ema_decay: Annotated[Float, Field(gt=0, lt=1)] | None = 0.99

    @model_validator(mode="after")
    def _frames(self) -> StudentConfig:
        if self.sample_frame_interval > self.sample_steps:
            raise Problem(
                ("sample_frame_interval",),
                f"must be <= sample_steps ({self.sample_steps}), or no frame is kept; "
                f"got {self.sample_frame_interval}",
            )
        return self


class SelectionConfig(_Section):
    """Which frames get labelled: the selector, the force-spread trust window, cap, and the
    stopping rule."""

    #: ``window_fps``: farthest-point sampling among the frames inside the trust window;
    #: ``top_spread_fps``: among the ``top_spread_pool`` x ``max_per_iteration`` frames with
    #: the highest spreads below trust_hi, whatever trust_lo (al_loop/selection.py).
    strategy: Literal[STRATEGIES] = DEFAULT_STRATEGY  # type: ignore[valid-type]
    top_spread_pool: Annotated[Int, Field(ge=1)] = 2

    trust_lo_eV_A: Annotated[Float, Field(ge=0)] = 0.05
    trust_hi_eV_A: Annotated[Float, Field(gt=0)] = 0.30
    adaptive_percentile: Annotated[Float, Field(gt=0, lt=100)] | None = None
    max_per_iteration: Annotated[Int, Field(ge=1)] = 50
    converged_fraction: Annotated[Float, Field(gt=0, le=1)] = 0.95
    #: A frame counts as accurate for convergence only if its committee energy spread is below
    #: this too (meV/atom; null: the force spread alone decides).
    converged_energy_spread_meV_atom: Annotated[Float, Field(gt=0)] | None = None
    #: Converged when the accurate fraction reaches converged_fraction this many times in a row.
    converged_iterations: Annotated[Int, Field(ge=1)] = 2
    max_iterations: Annotated[Int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _window(self) -> SelectionConfig:
        if self.converged_iterations > self.max_iterations:
            raise Problem(
                ("converged_iterations",),
                f"must be <= max_iterations ({self.max_iterations}), or the campaign can never "
                f"converge; got {self.converged_iterations}",
            )
        if self.trust_lo_eV_A >= self.trust_hi_eV_A:
            raise Problem(
                ("trust_lo_eV_A",),
                f"must be below trust_hi_eV_A: got trust_lo_eV_A {self.trust_lo_eV_A} >= "
                f"trust_hi_eV_A {self.trust_hi_eV_A}",
            )
        return self


def _database_name(value: str) -> str:
    bad = sorted(set(value) & set('/\\. "$\0'))
    if bad or len(value.encode()) > 63:
        raise ValueError(
            f"invalid MongoDB database name {value!r}: at most 63 bytes, "
            'without spaces or any of / \\ . " $'
        )
    return value


class StoreConfig(_Section):
    """The MongoDB dataset. No URI at all: the embedded server."""

    uri: NonEmptyStr | None = None
    uri_file: Path | None = None
    uri_env: NonEmptyStr | None = None
    database: Annotated[NonEmptyStr, AfterValidator(_database_name)] = "al_loop"
    launchpad_database: Annotated[NonEmptyStr, AfterValidator(_database_name)] = "al_loop_fireworks"

    @field_validator("uri")
    @classmethod
    def _safe_uri(cls, uri: str | None) -> str | None:
        if uri is None:
            return None
        if _has_password(uri):
            raise ValueError(
                "contains a password; never write credentials in the campaign file: put the URI "
                "in a file (store.uri_file) or in the environment variable named by store.uri_env"
            )
        if not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(f"must start with mongodb:// or mongodb+srv://, got {redact(uri)!r}")
        return uri

    @field_validator("uri_file")
    @classmethod
    def _uri_file_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _must_be_file(value, info)

    @field_validator("uri_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and not _ENV_NAME_RE.fullmatch(name):
            what = "a URI" if "://" in name else repr(redact(name))
            raise ValueError(
                f"must be the NAME of an environment variable (such as AL_LOOP_MONGO_URI), "
                f"not {what}"
            )
        return name

    @model_validator(mode="after")
    def _consistent(self) -> StoreConfig:
        given = [k for k in ("uri", "uri_file", "uri_env") if getattr(self, k) is not None]
        if len(given) > 1:
            raise Problem(
                (given[1],),
                f"give only one of store.uri, store.uri_file, store.uri_env (got "
                f"{' and '.join(given)})",
            )
        if self.launchpad_database == self.database:
            raise Problem(
                ("launchpad_database",),
                f"must differ from database ({self.database!r}): FireWorks' LaunchPad resets "
                "its own database",
            )
        return self

    @property
    def embedded(self) -> bool:
        """Whether the dataset is the embedded server (no URI given at all)."""
        return self.uri is None and self.uri_file is None and self.uri_env is None


_WALLTIME_RE = re.compile(r"(\d+-)?\d{1,3}:\d{2}:\d{2}")


def _walltime(value: str) -> str:
    if not _WALLTIME_RE.fullmatch(value):
        raise ValueError(f"must be HH:MM:SS (or D-HH:MM:SS), e.g. '02:00:00'; got {value!r}")
    return value


class QueueConfig(_Section):
    """An HPC queue that runs rocket launchers in jobs (launchers/queues.py, the templates in
    configs/queues/). Each job runs Fireworks of its ``category`` until none is ready."""

    system: Literal["slurm", "pbs"]
    #: The FWorker category its jobs take (null: the queue's name).
    category: NonEmptyStr | None = None
    account: NonEmptyStr | None = None
    #: SLURM partition / PBS queue (null: the system's default).
    partition: NonEmptyStr | None = None
    qos: NonEmptyStr | None = None
    walltime: Annotated[str, AfterValidator(_walltime)] = "01:00:00"
    nodes: Annotated[Int, Field(ge=1)] = 1
    #: Tasks per node: the cores a DFT run's parallel_cmd may use.
    cores: Annotated[Int, Field(ge=1)] = 1
    gpus_per_node: Annotated[Int, Field(ge=0)] | None = None
    #: Memory per node, SLURM/PBS syntax (``16G``); null: the system's default.
    memory: NonEmptyStr | None = None
    constraint: NonEmptyStr | None = None
    #: ``module load`` these first, then run these shell lines, before the rocket.
    modules: list[NonEmptyStr] = Field(default_factory=list)
    pre_rocket: list[NonEmptyStr] = Field(default_factory=list)
    #: Jobs of this campaign in the queue at most (pending and running).
    max_jobs: Annotated[Int, Field(ge=1)] = 4


class LauncherConfig(_Section):
    """FireWorks: how many local workers, how many structures per Firework, and the queue
    that labels them (null: local rocket launchers)."""

    workers: Annotated[Int, Field(ge=1)] = 2
    batch_size: Annotated[Int, Field(ge=1)] = 10  # FireWorks costs ~0.1-0.7 s per Firework
    fworker_name: NonEmptyStr = "al-loop-local"
    category: NonEmptyStr | None = None
    #: A label whose worker has not beaten its heartbeat for this long (it beats every tenth
    #: of it) is taken over by the next Firework that asks for it: its worker is gone.
    claim_expiry_s: Annotated[Float, Field(ge=1)] = 600.0
    #: A name in ``queues``: `al-loop run` submits jobs there (up to its max_jobs) instead of
    #: running local launchers, and labelling Fireworks take its category.
    queue: NonEmptyStr | None = None


class PhaseConfig(_Section):
    """Phase stability (``al-loop phase``): candidates relaxed on a pressure grid, enthalpy
    hulls and transition pressures."""

    #: The grid (GPa); null: 11 pressures from 0 to the campaign's highest.
    pressures_GPa: (
        Annotated[
            list[Annotated[Float, Field(ge=0, le=1000)]],
            Field(min_length=2),
            AfterValidator(_unique),
        ]
        | None
    ) = None
    #: Prototypes (al_loop/phase/candidates.py): elemental lattices on every element, binary
    #: ones on every ordered pair, ternary ones on every ordered triple.
    prototypes: Annotated[
        list[Literal[tuple(PROTOTYPES)]],  # type: ignore[valid-type]
        AfterValidator(_unique),
    ] = Field(default_factory=lambda: list(PROTOTYPES))
    #: Your own structures (CIF, POSCAR, extxyz, ...), relative to this file.
    files: list[Annotated[Path, AfterValidator(_seed_file)]] = Field(default_factory=list)
    #: Per composition, this many of the campaign's labelled structures of lowest enthalpy
    #: (energy + P V at the pressure they were labelled at) join the candidates.
    from_campaign: Annotated[Int, Field(ge=0)] = 1
    #: Which model relaxes: the student (default), or for checks the teacher committee or the
    #: campaign's oracle itself (DFT: each run stored as a label, never repeated; in this
    #: process, not through FireWorks; choose few prototypes and pressures).
    model: Literal["student", "teacher", "oracle"] = "student"
    #: A relaxation ends below this force (eV/Å, and the cell filter's stress equivalent) ...
    fmax_eV_A: Annotated[Float, Field(gt=0)] = 2e-3
    #: ... or after this many steps (recorded as not converged).
    max_steps: Annotated[Int, Field(ge=1)] = 400
    #: Hold each candidate's space group while it relaxes (ASE's FixSymmetry).
    keep_symmetry: Bool = True
    #: The teacher checks every relaxed cell. Where its force spread passes this (eV/Å), or
    #: its enthalpy differs from the model's by more than the gap below, the cell is outside
    #: what the student knows: it is left out of the hulls and listed. (A symmetric cell has
    #: no forces, so its spread says little: the gap catches those.)
    max_teacher_spread_eV_A: Annotated[Float, Field(gt=0)] = 0.3
    max_teacher_gap_meV_atom: Annotated[Float, Field(gt=0)] = 50.0


class CampaignConfig(_Section):
    """One campaign, as written in its YAML file (paths resolved, defaults filled in)."""

    name: Annotated[str, AfterValidator(_check_name)]
    description: str = ""
    #: Where the campaign's files go; null: ``<cwd>/al-loop-runs/<name>`` (see resolved_workdir).
    workdir: Path | None = None
    #: Seeds every random choice (numpy's generators take 0 .. 2^32 - 1).
    seed: Annotated[Int, Field(ge=0, le=2**32 - 1)] = 0
    system: Annotated[SystemConfig, BeforeValidator(_none_is_empty)]
    seeds: Annotated[SeedsConfig, BeforeValidator(_none_is_empty)] = _section()
    oracle: Annotated[OracleConfig, BeforeValidator(_none_is_empty)] = _section()
    committee: Annotated[CommitteeConfig, BeforeValidator(_none_is_empty)] = _section()
    exploration: Annotated[ExplorationConfig, BeforeValidator(_none_is_empty)] = _section()
    selection: Annotated[SelectionConfig, BeforeValidator(_none_is_empty)] = _section()
    store: Annotated[StoreConfig, BeforeValidator(_none_is_empty)] = _section()
    launcher: Annotated[LauncherConfig, BeforeValidator(_none_is_empty)] = _section()
    student: Annotated[StudentConfig, BeforeValidator(_none_is_empty)] = _section()
    phase: Annotated[PhaseConfig, BeforeValidator(_none_is_empty)] = _section()
    #: HPC queues by name (``al-loop launch --queue NAME``; ``launcher.queue``).
    queues: dict[Annotated[str, AfterValidator(_check_name)], QueueConfig] = Field(
        default_factory=dict
    )

    _source_file: Path | None = PrivateAttr(default=None)

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} exists and is not a folder")
        return path

    @model_validator(mode="after")
    def _across_sections(self) -> CampaignConfig:
        supported = oracle_class(self.oracle.code).supported_elements
        if supported is not None:
            missing = [el for el in self.system.elements if el not in supported]
            if missing:
                raise Problem(
                    ("oracle", "code"),
                    f"oracle {self.oracle.code!r} cannot handle {', '.join(missing)} "
                    f"(system.elements); it handles only {', '.join(sorted(supported))}",
                )
        table = oracle_class(self.oracle.code).per_element_setting
        if table:
            given = getattr(self.oracle.settings, table)
            missing = [el for el in self.system.elements if el not in given]
            if missing:
                where = (
                    ("oracle", "overrides", table)
                    if table in self.oracle.overrides
                    else ("oracle", "preset")
                )
                raise Problem(
                    where,
                    f"no {table} entry for {', '.join(missing)} (system.elements): add one "
                    f"under oracle.overrides.{table}",
                )
        for section, queue in (
            ("launcher", self.launcher.queue),
            ("committee", self.committee.queue),
        ):
            if queue is not None and queue not in self.queues:
                raise Problem(
                    (section, "queue"),
                    f"no queue {queue!r} in queues{did_you_mean(queue, list(self.queues))}; "
                    f"defined: {', '.join(self.queues) or 'none (add a queues: section)'}",
                )
        spread, trust_lo = self.exploration.max_spread_eV_A, self.selection.trust_lo_eV_A
        if spread <= trust_lo:
            raise Problem(
                ("exploration", "max_spread_eV_A"),
                f"must be above selection.trust_lo_eV_A ({trust_lo}), or MD stops before any "
                f"frame can be selected; got {spread}",
            )
        for index, path in enumerate(self.seeds.files):
            try:
                file_seeds([path], self.system.elements)
            except ValueError as exc:
                raise Problem(("seeds", "files", index), str(exc)) from None
        return self

    @property
    def source_file(self) -> Path | None:
        """The campaign file this was loaded from (absolute), if any."""
        return self._source_file

    def queue_category(self, name: str) -> str:
        """The FWorker category of the jobs of queue ``name``."""
        return self.queues[name].category or name

    def labelling_category(self) -> str | None:
        """The category of labelling Fireworks: launcher.category, else launcher.queue's."""
        if self.launcher.category is not None or self.launcher.queue is None:
            return self.launcher.category
        return self.queue_category(self.launcher.queue)

    def resolved_workdir(self) -> Path:
        """The campaign's folder: ``workdir``, or ``al-loop-runs/<name>`` beside the campaign
        file (the current directory for a config built in Python). Not created."""
        if self.workdir is not None:
            return self.workdir
        base = self.source_file.parent if self.source_file is not None else Path.cwd()
        return base / "al-loop-runs" / self.name

    def to_document(self) -> dict[str, Any]:
        """The resolved settings as JSON-compatible data (paths as strings)."""
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        """SHA-256 of the sorted-key JSON of :meth:`to_document`."""
        payload = json.dumps(self.to_document(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_campaign(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign file; raise one :class:`ConfigError` if it is not usable."""
    file = Path(path)
    data, lines = read_yaml(file)
    source = Path(os.path.abspath(file))
    try:
        config = CampaignConfig.model_validate(data, context={"base_dir": source.parent})
    except ValidationError as exc:
        raise config_error(exc, file, lines, CampaignConfig) from None
    config._source_file = source
    return config
