"""The campaign file: one YAML file, a pydantic schema, and errors that say what to do.

``load_campaign(path)`` reads the file, resolves relative paths against the file's folder and
returns a :class:`CampaignConfig`, or raises one :class:`ConfigError` naming the file, the key
path (``system.elements[1]``) and the fix. Units are part of the key names (``pressures_GPa``),
values are plain numbers. Loading never writes anything.
"""

from __future__ import annotations

import difflib
import hashlib
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
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from al_loop.seeds import file_seeds
from calculators.oracles import available_oracles, available_presets, oracle_class, resolve_settings
from calculators.oracles.registry import preset_path

__all__ = [
    "CampaignConfig",
    "CommitteeConfig",
    "ConfigError",
    "ExplorationConfig",
    "LauncherConfig",
    "OracleConfig",
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
#: Key-name unit suffixes and how to say them, longest first.
_UNITS = (("_eV_A", "eV/Å"), ("_GPa", "GPa"), ("_fs", "fs"), ("_K", "K"), ("_A", "Å"))
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S.*)?")
_MAX_SHOWN = 10  # problems listed in one error


class ConfigError(Exception):
    """A campaign file that cannot be used. ``str(err)`` is ``"<file>: <key.path>: <message>"``.

    ``problems`` holds every ``(key_path, message)`` found (the first is ``key_path``/``message``);
    ``str(err)`` shows one line per problem.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        key_path: str = "",
        line: int | None = None,
        problems: list[tuple[str, str]] | None = None,
    ) -> None:
        self.file: Path | None = Path(file) if file is not None else None
        self.key_path = key_path
        self.message = message
        self.line = line
        self.problems: list[tuple[str, str]] = problems or [(key_path, message)]
        super().__init__(message)

    def _line(self, key_path: str, message: str) -> str:
        return ": ".join(p for p in (str(self.file or ""), key_path, message) if p)

    def __str__(self) -> str:
        lines = [self._line(path, msg) for path, msg in self.problems[:_MAX_SHOWN]]
        if len(self.problems) > _MAX_SHOWN:
            lines.append(f"... and {len(self.problems) - _MAX_SHOWN} more problems")
        return "\n".join(lines)


class _Problem(ValueError):
    """A validator's complaint about a key below the one being validated (``loc`` is relative)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


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
            raise _Problem((i,), f"duplicate value {value!r} (already given at [{first[value]}])")
        first[value] = i
    return values


def _none_is_empty(value: Any) -> Any:
    """A section written as ``seeds:`` with nothing under it means all defaults."""
    return {} if value is None else value


def _pair(value: Any) -> Any:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"expected two numbers [lo, hi], got {_show(value)}")
    return value


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"lo must be <= hi, got [{value[0]}, {value[1]}]; write [lo, hi]")
    return value


def _seed_file(value: Path, info: ValidationInfo) -> Path:
    name = Path(value).name
    if Path(name).suffix.lower() not in SEED_SUFFIXES and not name.startswith(SEED_NAMES):
        raise ValueError(
            f"{name!r} is not a structure file for seeding: use {', '.join(SEED_SUFFIXES)} "
            "or a VASP file named POSCAR/CONTCAR"
        )
    return _must_be_file(value, info)


def _has_password(uri: str) -> bool:
    head = uri.split("://", 1)[-1].split("?", 1)[0]
    return "@" in head and ":" in head.rsplit("@", 1)[0]


def _redact(text: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host``."""
    return re.sub(r"(://[^:/?#@\s]*:)[^@\s]*@", r"\1***@", text)


# Types: numbers and booleans are strict (no "50" -> 50, no true -> 1); ints are accepted as floats.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
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
    files: list[Annotated[Path, AfterValidator(_seed_file)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_seeds(self) -> SeedsConfig:
        if self.n_structures == 0 and not self.files:
            raise _Problem(
                ("n_structures",), "no initial structures: set n_structures > 0 or list files"
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
                f"unknown oracle code {code!r}{_did_you_mean(code, known)}; "
                f"available: {', '.join(known)}"
            )
        return code

    @field_validator("preset")
    @classmethod
    def _preset_file_relative(cls, preset: str, info: ValidationInfo) -> str:
        if Path(preset).suffix in {".yaml", ".yml"}:  # a file of its own, not a shipped name
            return str(_resolve(preset, info))
        return preset

    @model_validator(mode="after")
    def _preset_exists(self) -> OracleConfig:
        path = preset_path(self.code, self.preset)
        if not path.is_file():
            shipped = available_presets(self.code)
            raise _Problem(
                ("preset",),
                f"no preset {self.preset!r} for oracle {self.code!r} (looked for {path})"
                f"{_did_you_mean(self.preset, shipped)}; "
                f"available presets: {', '.join(shipped) or 'none'}",
            )
        try:
            settings = resolve_settings(self.code, self.preset, self.overrides)
        except yaml.YAMLError as exc:
            raise _Problem(("preset",), f"{path} is not valid YAML: {exc}") from None
        problem = oracle_class(self.code).settings_problem(settings)
        if problem:
            key, message = problem
            parts = tuple(key.split("."))  # "incar.NSW": a key inside a setting
            top = parts[0].split("[")[0]
            where = ("overrides", *parts) if top in self.overrides else ("preset",)
            raise _Problem(where, message)
        return self


class CommitteeConfig(_Section):
    """The MACE committee: size, starting point, and training (mace-torch's ``run_train``)."""

    n_models: Annotated[Int, Field(ge=2)] = 4
    #: A named foundation model (``medium-mpa-0``) or a path to a ``.model`` file; null: none.
    foundation_model: NonEmptyStr | None = None
    #: Pre-training structures (extxyz) replayed in multi-head fine-tuning; null: single head.
    replay_file: Annotated[Path, AfterValidator(_must_be_file)] | None = None
    replay_samples: Annotated[Int, Field(ge=1)] = 1000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float64"
    max_epochs: Annotated[Int, Field(ge=1)] = 50
    batch_size: Annotated[Int, Field(ge=1)] = 10
    learning_rate: Annotated[Float, Field(gt=0)] = 0.01
    energy_weight: Annotated[Float, Field(ge=0)] = 1.0
    forces_weight: Annotated[Float, Field(ge=0)] = 100.0
    stress_weight: Annotated[Float, Field(ge=0)] = 1.0
    #: Exponential moving average of the weights while training (null: off); see docs/design.md.
    ema_decay: Annotated[Float, Field(gt=0, lt=1)] | None = 0.99
    bootstrap: Bool = True
    #: Members trained at the same time (null: one per CPU core up to n_models on cpu, one on
    #: cuda); the cores are shared out among them.
    parallel_trainings: Annotated[Int, Field(ge=1)] | None = None
    #: Fraction of labels never trained on: the committee's error is measured on them.
    held_out_fraction: Annotated[Float, Field(ge=0, lt=0.5)] = 0.1
    #: Architecture when training from scratch (a fine-tuned model keeps its foundation's).
    num_channels: Annotated[Int, Field(ge=1)] = 32
    max_L: Annotated[Int, Field(ge=0, le=3)] = 1
    r_max_A: Annotated[Float, Field(gt=0, le=12)] = 5.0
    #: Further ``mace_run_train`` options, without the leading dashes (e.g. ``swa: true``).
    mace_args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("foundation_model")
    @classmethod
    def _model_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and ("/" in value or "\\" in value or value.endswith(".model")):
            try:
                return str(_must_be_file(value, info))
            except ValueError as err:
                raise ValueError(
                    f"{err}; give a MACE .model file or a named model (medium-mpa-0), or build a "
                    "tiny stand-in with `al-loop standin-foundation PATH --elements A,B`"
                ) from None
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
                    f"{key!r} is not an option of mace_run_train{_did_you_mean(key, known)}"
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
            raise _Problem(
                ("frame_interval",),
                f"must be <= steps ({self.steps}), or no frame is ever kept; "
                f"got {self.frame_interval}",
            )
        return self


class SelectionConfig(_Section):
    """Which frames get labelled: the force-spread trust window, cap, and stopping rule."""

    trust_lo_eV_A: Annotated[Float, Field(ge=0)] = 0.05
    trust_hi_eV_A: Annotated[Float, Field(gt=0)] = 0.30
    adaptive_percentile: Annotated[Float, Field(gt=0, lt=100)] | None = None
    max_per_iteration: Annotated[Int, Field(ge=1)] = 50
    converged_fraction: Annotated[Float, Field(gt=0, le=1)] = 0.95
    #: Converged when the accurate fraction reaches converged_fraction this many times in a row.
    converged_iterations: Annotated[Int, Field(ge=1)] = 2
    max_iterations: Annotated[Int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _window(self) -> SelectionConfig:
        if self.trust_lo_eV_A >= self.trust_hi_eV_A:
            raise _Problem(
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
            raise ValueError(f"must start with mongodb:// or mongodb+srv://, got {_redact(uri)!r}")
        return uri

    @field_validator("uri_file")
    @classmethod
    def _uri_file_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _must_be_file(value, info)

    @field_validator("uri_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and not _ENV_NAME_RE.fullmatch(name):
            what = "a URI" if "://" in name else repr(_redact(name))
            raise ValueError(
                f"must be the NAME of an environment variable (such as AL_LOOP_MONGO_URI), "
                f"not {what}"
            )
        return name

    @model_validator(mode="after")
    def _consistent(self) -> StoreConfig:
        given = [k for k in ("uri", "uri_file", "uri_env") if getattr(self, k) is not None]
        if len(given) > 1:
            raise _Problem(
                (given[1],),
                f"give only one of store.uri, store.uri_file, store.uri_env (got "
                f"{' and '.join(given)})",
            )
        if self.launchpad_database == self.database:
            raise _Problem(
                ("launchpad_database",),
                f"must differ from database ({self.database!r}): FireWorks' LaunchPad resets "
                "its own database",
            )
        return self


class LauncherConfig(_Section):
    """FireWorks: how many local workers, how many structures per Firework."""

    workers: Annotated[Int, Field(ge=1)] = 2
    batch_size: Annotated[Int, Field(ge=1)] = 10  # FireWorks costs ~0.1-0.7 s per Firework
    fworker_name: NonEmptyStr = "al-loop-local"
    category: NonEmptyStr | None = None


class CampaignConfig(_Section):
    """One campaign, as written in its YAML file (paths resolved, defaults filled in)."""

    name: Annotated[str, AfterValidator(_check_name)]
    description: str = ""
    #: Where the campaign's files go; null: ``<cwd>/al-loop-runs/<name>`` (see resolved_workdir).
    workdir: Path | None = None
    seed: Int = 0
    system: Annotated[SystemConfig, BeforeValidator(_none_is_empty)]
    seeds: Annotated[SeedsConfig, BeforeValidator(_none_is_empty)] = _section()
    oracle: Annotated[OracleConfig, BeforeValidator(_none_is_empty)] = _section()
    committee: Annotated[CommitteeConfig, BeforeValidator(_none_is_empty)] = _section()
    exploration: Annotated[ExplorationConfig, BeforeValidator(_none_is_empty)] = _section()
    selection: Annotated[SelectionConfig, BeforeValidator(_none_is_empty)] = _section()
    store: Annotated[StoreConfig, BeforeValidator(_none_is_empty)] = _section()
    launcher: Annotated[LauncherConfig, BeforeValidator(_none_is_empty)] = _section()

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
                raise _Problem(
                    ("oracle", "code"),
                    f"oracle {self.oracle.code!r} cannot handle {', '.join(missing)} "
                    f"(system.elements); it handles only {', '.join(sorted(supported))}",
                )
        table = oracle_class(self.oracle.code).per_element_setting
        if table:
            settings = resolve_settings(self.oracle.code, self.oracle.preset, self.oracle.overrides)
            missing = [el for el in self.system.elements if el not in (settings.get(table) or {})]
            if missing:
                where = (
                    ("oracle", "overrides", table)
                    if table in self.oracle.overrides
                    else ("oracle", "preset")
                )
                raise _Problem(
                    where,
                    f"no {table} entry for {', '.join(missing)} (system.elements): add one "
                    f"under oracle.overrides.{table}",
                )
        spread, trust_lo = self.exploration.max_spread_eV_A, self.selection.trust_lo_eV_A
        if spread <= trust_lo:
            raise _Problem(
                ("exploration", "max_spread_eV_A"),
                f"must be above selection.trust_lo_eV_A ({trust_lo}), or MD stops before any "
                f"frame can be selected; got {spread}",
            )
        for index, path in enumerate(self.seeds.files):
            try:
                file_seeds([path], self.system.elements)
            except ValueError as exc:
                raise _Problem(("seeds", "files", index), str(exc)) from None
        return self

    @property
    def source_file(self) -> Path | None:
        """The campaign file this was loaded from (absolute), if any."""
        return self._source_file

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

Loc = tuple[str | int, ...]


def load_campaign(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign file; raise one :class:`ConfigError` if it is not usable."""
    file = Path(path)
    data, lines = _read_yaml(file)
    source = Path(os.path.abspath(file))
    try:
        config = CampaignConfig.model_validate(data, context={"base_dir": source.parent})
    except ValidationError as exc:
        raise _config_error(exc, file, lines) from None
    config._source_file = source
    return config


def _read_yaml(file: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    """The top-level mapping of ``file`` and the line of every key and list item in it."""
    if file.is_dir():
        inside = sorted(p.name for p in file.iterdir() if p.suffix in {".yaml", ".yml"})[:5]
        hint = f" (YAML files in it: {', '.join(inside)})" if inside else ""
        raise ConfigError(f"is a folder, not a campaign file{hint}", file=file)
    if not file.exists():
        raise ConfigError(f"campaign file not found (looked at {os.path.abspath(file)})", file=file)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not a text (UTF-8) file; a campaign is a YAML file", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=file) from None

    empty = ConfigError(
        "the file is empty; a campaign needs at least 'name:' and 'system: elements:' "
        "(see configs/demo.yaml)",
        file=file,
    )
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise empty
        lines: dict[Loc, int] = {}
        _index_nodes(node, (), lines, file, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    if data is None:
        raise empty
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of keys (name:, system:, ...), got {_show(data)}",
            file=file,
            line=1,
        )
    return data, lines


def _yaml_error(exc: yaml.MarkedYAMLError, file: Path) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = exc.problem or exc.context or "syntax error"
    if exc.context and exc.problem:
        since = exc.context_mark
        started = f" that starts at line {since.line + 1}" if since and since != mark else ""
        if exc.problem.startswith("but "):
            problem = f"{exc.context}{started}, {exc.problem}"
        else:
            problem = f"{exc.problem} ({exc.context}{started})"
    if exc.problem == "but found another document":
        problem = "a campaign file holds one YAML document; a second one ('---') starts here"
    if "\\t" in problem:
        problem += "; indent with spaces, not tabs"
    if exc.problem == "mapping values are not allowed here":
        problem += "; check the indentation, and that every ':' above is followed by a space"
    return ConfigError(
        f"invalid YAML{where}: {problem}", file=file, line=mark.line + 1 if mark else None
    )


def _index_nodes(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], file: Path, stack: set[int]
) -> None:
    """Record the line of every key/item and refuse duplicate keys (YAML keeps the last one)."""
    if id(node) in stack:  # a recursive alias
        return
    stack.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            here = (*loc, key)
            if key in first:
                raise ConfigError(
                    f"duplicate key {key!r} at line {line} (first given at line {first[key]}); "
                    "keep one",
                    file=file,
                    key_path=_format_loc(here),
                    line=line,
                )
            first[key] = line
            lines[here] = line
            _index_nodes(value_node, here, lines, file, stack)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _index_nodes(item, (*loc, i), lines, file, stack)
    stack.discard(id(node))


def _config_error(exc: ValidationError, file: Path, lines: dict[Loc, int]) -> ConfigError:
    """One ConfigError for all of pydantic's complaints, unknown keys first (they explain more)."""
    problems: list[tuple[str, str]] = []
    first_line: int | None = None
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    for err in errors:
        loc: Loc = tuple(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _Problem):
            loc = (*loc, *cause.loc)
        if err["type"] == "invalid_key":  # pydantic puts the key itself at the end of loc
            loc = loc[:-1]
        message = _explain(err, loc)
        line = _line_of(loc, lines)
        if line is not None:
            message += f" (line {line})"
        problem = (_format_loc(loc), message)
        if problem not in problems:
            if not problems:
                first_line = line
            problems.append(problem)
    key_path, message = problems[0]
    return ConfigError(message, file=file, key_path=key_path, line=first_line, problems=problems)


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]":
            out += f".{part}" if out else str(part)
    return out


def _line_of(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The section model found at ``loc`` (``()`` is the campaign), or None."""
    model: type[BaseModel] | None = CampaignConfig
    for part in loc:
        field = model.model_fields.get(part) if model and isinstance(part, str) else None
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model


def _field_name(loc: Loc) -> str:
    return next((p for p in reversed(loc) if isinstance(p, str)), "")


def _unit(field: str) -> str:
    return next((unit for suffix, unit in _UNITS if field.endswith(suffix)), "")


def _show(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a mapping"
    text = _redact(repr(value))
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"a list {text}" if isinstance(value, list) else text


def _did_you_mean(word: str, choices: list[str]) -> str:
    lower = {c.lower(): c for c in choices}
    match = lower.get(word.lower()) or next(
        iter(difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)), None
    )
    match = lower.get(match, match) if match else None
    return f"; did you mean {match!r}?" if match else ""


def _stem(key: str) -> str:
    """``pressures_GPa`` → ``pressure``: the key without its unit suffix or plural s."""
    return key.lower().split("_")[0].rstrip("s")


def _unknown_key(loc: Loc) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    model = _model_at(parent)
    allowed = list(model.model_fields) if model else []
    where = f"in {_format_loc(parent)}" if parent else "at the top level"
    message = f"unknown key {key!r} {where}"
    same_stem = [a for a in allowed if _stem(a) == _stem(key) and "_" in a]
    if same_stem:
        unit = _unit(same_stem[0])
        message += f"; did you mean {same_stem[0]!r}?"
        if unit:
            message += f" (units are part of the key name: give the values in {unit})"
    elif hint := _did_you_mean(key, allowed):
        message += hint
    else:
        elsewhere = _find_key_elsewhere(key)
        if elsewhere and elsewhere != _format_loc(loc):
            message += f"; it belongs under {elsewhere.rsplit('.', 1)[0]}: ({elsewhere})"
    if allowed:
        message += f"; allowed keys: {', '.join(allowed)}"
    return message


def _find_key_elsewhere(key: str) -> str | None:
    """The full key path of a section key of that name (``elements`` → ``system.elements``)."""
    for section, field in CampaignConfig.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for name in ann.model_fields:
                if name.lower() == key.lower() or (_stem(name) == _stem(key) and "_" in name):
                    return f"{section}.{name}"
    return None


def _as_list_hint(value: Any) -> str:
    if isinstance(value, str):
        items = [p for p in re.split(r"[,\s]+", value.strip()) if p]
        return f"; write [{', '.join(items)}]" if items else ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"; write [{value}]"
    return ""


def _number_message(kind: str, value: Any, field: str) -> str:
    want = "a whole number" if kind.startswith("int") else "a number"
    unit = _unit(field)
    if isinstance(value, str):
        match = _NUMBER_RE.fullmatch(value)
        if match and match.group(2):
            in_unit = f" in {unit}" if unit else ""
            note = f"; units are in the key name ({field})" if unit else ""
            return f"got {value!r}: give a plain number{in_unit}{note}"
        if match and "e" in value.lower() and "." not in value:
            return f"YAML reads {value!r} as text: write it with a decimal point (e.g. 1.0e3)"
        if match:
            return f"got the text {value!r}: write the number without quotes"
    return f"expected {want}, got {_show(value)}"


_COMPARE = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _explain(err: Any, loc: Loc) -> str:
    """A pydantic error in the campaign file's words."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    field = _field_name(loc)
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind in ("value_error", "assertion_error"):
        cause = ctx.get("error")
        return cause.message if isinstance(cause, _Problem) else str(cause or err["msg"])
    if kind in ("float_type", "float_parsing", "int_type", "int_parsing", "int_from_float"):
        return _number_message(kind, value, field)
    if kind in _COMPARE:
        op, key = _COMPARE[kind]
        unit = _unit(field)
        bound = f"{ctx[key]:g}" if isinstance(ctx[key], float) else str(ctx[key])
        return f"must be {op} {bound}{' ' + unit if unit else ''}, got {_show(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {_show(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_show(value)}"
    if kind == "string_type":
        message = f"expected text, got {_show(value)}"
        if isinstance(value, bool):
            return message + " (YAML reads yes/no/on/off as booleans): put it in quotes"
        is_number = isinstance(value, int | float)
        if field == "elements" and isinstance(value, int) and 0 < value < len(chemical_symbols):
            return message + f"; did you mean {chemical_symbols[value]!r}? give symbols"
        return message + ("; put it in quotes" if is_number else "")
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, got {_show(value)}{_as_list_hint(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        model = _model_at(loc)
        allowed = f"; allowed keys: {', '.join(model.model_fields)}" if model else ""
        return f"expected a mapping (indented 'key: value' lines), got {_show(value)}{allowed}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = _did_you_mean(str(value), choices) if isinstance(value, str) else ""
        return f"must be one of {', '.join(choices)}; got {_show(value)}{hint}"
    if kind == "invalid_key":
        return (
            f"key {_show(value)} is not text: YAML reads unquoted numbers, yes/no/on/off and "
            "true/false as such; quote the key or fix its spelling"
        )
    if kind == "string_too_short":
        return "must not be empty" if value == "" else str(err["msg"])
    if kind == "too_short":
        if hasattr(value, "__len__") and len(value) == 0:
            return "must not be empty"
        return f"needs at least {ctx.get('min_length')} items, got {_show(value)}"
    if kind == "too_long":
        return f"has too many items (at most {ctx.get('max_length')}), got {_show(value)}"
    if kind in ("path_type", "path_parsing"):
        return f"expected a file path, got {_show(value)}"
    return str(err["msg"])
