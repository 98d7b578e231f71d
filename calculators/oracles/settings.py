"""Typed oracle settings: every field is *physics* (what a label is) or *execution* (how it is run).

A label's identity is the hash of its code and the physics part of its settings, with the files
a physics setting names (pseudopotentials, POTCARs) replaced by the SHA-256 of their content:

- **physics**: functional, cut-offs, smearing, k-point spacing, spin, convergence thresholds,
  pseudopotential/POTCAR content. Changing one makes new labels.
- **execution**: wall time, parallel command, binary, paths, custodian options, and the SCF's
  numerics (mixing, iteration caps, algorithms), which change how the answer is reached, not
  what it is. Changing one keeps every label.

A retry rung (``retries``) may change execution settings only: it is refused when the campaign
file is loaded if it changes the physics part, so a label's identity is known before it runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

PHYSICS, EXECUTION = "physics", "execution"
Role = Literal["physics", "execution"]


class SettingProblem(ValueError):
    """A problem with a key *inside* a setting: ``loc`` is relative to the field validated
    (``("ENCTU",)`` inside ``incar``), so that errors name the exact key."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def first_problem(err: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """The first error of a validation as (key path, message), a :class:`SettingProblem`'s
    own key path and message included."""
    first = err.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, SettingProblem):
        return (*first["loc"], *cause.loc), cause.message
    return tuple(first["loc"]), first["msg"]


def physics(default: Any = ..., description: str = "", **kwargs: Any) -> Any:
    """A physics field: part of a label's identity."""
    return Field(default, description=description, json_schema_extra={"role": PHYSICS}, **kwargs)


def execution(default: Any = ..., description: str = "", **kwargs: Any) -> Any:
    """An execution field: stored with a label, never part of its identity."""
    return Field(default, description=description, json_schema_extra={"role": EXECUTION}, **kwargs)


def merge_settings(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into ``base``; an override of ``None`` removes the key."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths at which two JSON-like values differ (``incar.SIGMA``, ``ecutwfc_Ry``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                out.append(path)
            else:
                out.extend(differences(a[key], b[key], path))
        return out
    return [] if a == b else [prefix or "(value)"]


def digest(payload: Any) -> str:
    """SHA-256 of the sorted-key JSON of ``payload``."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class OracleSettings(BaseModel):
    """Base of every code's settings. Subclasses declare each field with :func:`physics` or
    :func:`execution`; :meth:`physics_part` is what a label's identity is made of."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True
    )

    #: Settings that hold a folder: a campaign file's relative path is resolved against it.
    path_fields: ClassVar[frozenset[str]] = frozenset()
    #: Settings that a worker executes (program, launcher, their arguments): a worker takes
    #: them from its own configuration only, never from a Firework (launchers.tasks).
    command_fields: ClassVar[frozenset[str]] = frozenset()
    #: Physics settings that are tables by element: a label's identity holds only the entries
    #: of its structure's elements.
    per_element_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def role(cls, field: str) -> Role:
        """``physics`` or ``execution`` (every field must say which)."""
        extra = cls.model_fields[field].json_schema_extra
        role = extra.get("role") if isinstance(extra, dict) else None
        if role not in (PHYSICS, EXECUTION):
            raise TypeError(f"{cls.__name__}.{field} is marked neither physics nor execution")
        return role  # type: ignore[return-value]

    @classmethod
    def fields_of(cls, role: Role) -> list[str]:
        return [name for name in cls.model_fields if cls.role(name) == role]

    @classmethod
    def describe(cls) -> dict[str, str]:
        """``{field: "physics|execution: description"}``, for documentation and errors."""
        return {
            name: f"{cls.role(name)}: {field.description or ''}"
            for name, field in cls.model_fields.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON-compatible data (what a label and a Firework store)."""
        return self.model_dump(mode="json")

    def physics_part(self) -> dict[str, Any]:
        """The physics settings (before file contents are hashed in: see the oracle's
        ``physics``)."""
        return {k: v for k, v in self.to_dict().items() if self.role(k) == PHYSICS}

    def execution_part(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if self.role(k) == EXECUTION}

    def merged(self, changes: dict[str, Any]) -> OracleSettings:
        """These settings with ``changes`` deep-merged in (validated)."""
        return type(self).model_validate(merge_settings(self.to_dict(), changes))

    @model_validator(mode="after")
    def _rungs_change_execution_only(self) -> OracleSettings:
        rungs = getattr(self, "retries", None) or []
        if not rungs:
            return self
        base, physics = self.to_dict() | {"retries": []}, self.physics_part()
        for index, rung in enumerate(rungs):
            unknown = sorted(set(rung) - set(type(self).model_fields) - {"retries"})
            if unknown or "retries" in rung:
                bad = unknown[0] if unknown else "retries"
                raise SettingProblem(
                    ("retries", index, bad), f"a retry rung cannot set {bad!r}: not a setting"
                )
            commands = sorted(set(rung) & self.command_fields)
            if commands:
                raise SettingProblem(
                    ("retries", index, commands[0]),
                    f"a retry rung cannot change {commands[0]!r}: the command a worker runs is "
                    "its own (set it in oracle.overrides, or in the worker's al_loop_execution)",
                )
            try:
                after = type(self).model_validate(merge_settings(base, rung))
            except ValidationError as err:
                loc, message = first_problem(err)
                raise SettingProblem(("retries", index, *loc), message) from None
            changed = differences(physics, after.physics_part())
            if changed:
                raise SettingProblem(
                    ("retries", index, *changed[0].split(".")),
                    f"a retry may change execution settings only (mixing, iterations, "
                    f"algorithms), not the physics of the label ({', '.join(changed)})",
                )
        return self
