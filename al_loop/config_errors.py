"""The campaign file's error engine: YAML read with the line of every key, and pydantic's
complaints turned into one :class:`ConfigError` that names the file, the key path, the line and
the fix (did-you-mean, units, allowed keys).

Generic over the schema: every function that needs to know the keys takes the ``root`` model
(the campaign's, or a code's oracle settings), so this module imports no schema.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from ase.data import chemical_symbols
from pydantic import BaseModel, ValidationError

from calculators.yaml_files import YamlTooLarge, check_expansion, check_size

#: Key-name unit suffixes and how to say them, longest first.
UNITS = (
    ("_eV_A", "eV/Å"), ("_GPa", "GPa"), ("_fs", "fs"), ("_Ry", "Ry"), ("_K", "K"), ("_A", "Å"),
    ("_s", "s"),
)  # fmt: skip
_NUMBER_RE = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S.*)?")
_MAX_SHOWN = 10  # problems listed in one error

#: A key path: section names, keys and list indices.
Loc = tuple[str | int, ...]


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


class Problem(ValueError):
    """A validator's complaint about a key below the one being validated (``loc`` is relative),
    or about several (``items``: every ``(loc, message)``)."""

    def __init__(
        self,
        loc: tuple[str | int, ...],
        message: str,
        items: list[tuple[tuple[str | int, ...], str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.items = items or [(loc, message)]


def redact(text: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host``."""
    return re.sub(r"(://[^:/?#@\s]*:)[^@\s]*@", r"\1***@", text)


def read_yaml(file: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    """The top-level mapping of ``file`` and the line of every key and list item in it."""
    if file.is_dir():
        inside = sorted(p.name for p in file.iterdir() if p.suffix in {".yaml", ".yml"})[:5]
        hint = f" (YAML files in it: {', '.join(inside)})" if inside else ""
        raise ConfigError(f"is a folder, not a campaign file{hint}", file=file)
    if not file.exists():
        raise ConfigError(f"campaign file not found (looked at {os.path.abspath(file)})", file=file)
    try:
        check_size(file)
        text = file.read_text(encoding="utf-8")
    except YamlTooLarge as exc:
        raise ConfigError(str(exc), file=file) from None
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
        check_expansion(node)  # before anything walks the aliases
        lines: dict[Loc, int] = {}
        _index_nodes(node, (), lines, file, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    except YamlTooLarge as exc:
        raise ConfigError(str(exc), file=file) from None
    finally:
        loader.dispose()
    if data is None:
        raise empty
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of keys (name:, system:, ...), got {show(data)}",
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
                    key_path=format_loc(here),
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


def explain_all(
    exc: ValidationError, root: type[BaseModel], root_name: str = "the top level"
) -> list[tuple[Loc, str]]:
    """Every complaint of ``exc`` as (key path, message), unknown keys first (they explain
    more). A validator's own :class:`Problem` (or any error with ``loc`` and ``message``, such
    as an oracle's ``SettingProblem``) names the keys below the one validated."""
    out: list[tuple[Loc, str]] = []
    for err in sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden"):
        loc: Loc = tuple(err["loc"])
        if err["type"] == "invalid_key":  # pydantic puts the key itself at the end of loc
            loc = loc[:-1]
        cause = (err.get("ctx") or {}).get("error")
        items = getattr(cause, "items", None) or (
            [(cause.loc, cause.message)] if hasattr(cause, "loc") else None
        )
        if items:
            out.extend(((*loc, *sub), message) for sub, message in items)
        else:
            out.append((loc, _explain(err, loc, root, root_name)))
    return out


def config_error(
    exc: ValidationError, file: Path, lines: dict[Loc, int], root: type[BaseModel]
) -> ConfigError:
    """One ConfigError for all of pydantic's complaints about the file ``file`` of ``root``."""
    problems: list[tuple[str, str]] = []
    first_line: int | None = None
    for loc, explained in explain_all(exc, root):
        line = _line_of(loc, lines)
        message = explained if line is None else f"{explained} (line {line})"
        problem = (format_loc(loc), message)
        if problem not in problems:
            if not problems:
                first_line = line
            problems.append(problem)
    key_path, message = problems[0]
    return ConfigError(message, file=file, key_path=key_path, line=first_line, problems=problems)


def format_loc(loc: Loc) -> str:
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


def _model_at(loc: Loc, root: type[BaseModel]) -> type[BaseModel] | None:
    """The section model found at ``loc`` (``()`` is ``root``), or None."""
    model: type[BaseModel] | None = root
    for part in loc:
        field = model.model_fields.get(part) if model and isinstance(part, str) else None
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model


def _field_name(loc: Loc) -> str:
    return next((p for p in reversed(loc) if isinstance(p, str)), "")


def _unit(field: str) -> str:
    return next((unit for suffix, unit in UNITS if field.endswith(suffix)), "")


def show(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a mapping"
    text = redact(repr(value))
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"a list {text}" if isinstance(value, list) else text


def did_you_mean(word: str, choices: list[str]) -> str:
    lower = {c.lower(): c for c in choices}
    match = lower.get(word.lower()) or next(
        iter(difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)), None
    )
    match = lower.get(match, match) if match else None
    return f"; did you mean {match!r}?" if match else ""


def _stem(key: str) -> str:
    """``pressures_GPa`` → ``pressure``: the key without its unit suffix or plural s."""
    return key.lower().split("_")[0].rstrip("s")


def _unknown_key(loc: Loc, root: type[BaseModel], root_name: str) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    model = _model_at(parent, root)
    allowed = list(model.model_fields) if model else []
    where = f"in {format_loc(parent)}" if parent else root_name
    message = f"unknown key {key!r} {where}"
    same_stem = [a for a in allowed if _stem(a) == _stem(key) and "_" in a]
    if same_stem:
        unit = _unit(same_stem[0])
        message += f"; did you mean {same_stem[0]!r}?"
        if unit:
            message += f" (units are part of the key name: give the values in {unit})"
    elif hint := did_you_mean(key, allowed):
        message += hint
    else:
        elsewhere = _find_key_elsewhere(key, root)
        if elsewhere and elsewhere != format_loc(loc):
            message += f"; it belongs under {elsewhere.rsplit('.', 1)[0]}: ({elsewhere})"
    if allowed:
        message += f"; allowed keys: {', '.join(allowed)}"
    return message


def _find_key_elsewhere(key: str, root: type[BaseModel]) -> str | None:
    """The full key path of a section key of that name (``elements`` → ``system.elements``)."""
    for section, field in root.model_fields.items():
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
    return f"expected {want}, got {show(value)}"


_COMPARE = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _explain(err: Any, loc: Loc, root: type[BaseModel], root_name: str) -> str:
    """A pydantic error in the campaign file's words."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    field = _field_name(loc)
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(loc, root, root_name)
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error") or err["msg"])
    if kind in ("float_type", "float_parsing", "int_type", "int_parsing", "int_from_float"):
        return _number_message(kind, value, field)
    if kind in _COMPARE:
        op, key = _COMPARE[kind]
        unit = _unit(field)
        bound = f"{ctx[key]:g}" if isinstance(ctx[key], float) else str(ctx[key])
        return f"must be {op} {bound}{' ' + unit if unit else ''}, got {show(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {show(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {show(value)}"
    if kind == "string_type":
        message = f"expected text, got {show(value)}"
        if isinstance(value, bool):
            return message + " (YAML reads yes/no/on/off as booleans): put it in quotes"
        is_number = isinstance(value, int | float)
        if field == "elements" and isinstance(value, int) and 0 < value < len(chemical_symbols):
            return message + f"; did you mean {chemical_symbols[value]!r}? give symbols"
        return message + ("; put it in quotes" if is_number else "")
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, got {show(value)}{_as_list_hint(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        model = _model_at(loc, root)
        allowed = f"; allowed keys: {', '.join(model.model_fields)}" if model else ""
        return f"expected a mapping (indented 'key: value' lines), got {show(value)}{allowed}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        return f"must be one of {', '.join(choices)}; got {show(value)}{hint}"
    if kind == "invalid_key":
        return (
            f"key {show(value)} is not text: YAML reads unquoted numbers, yes/no/on/off and "
            "true/false as such; quote the key or fix its spelling"
        )
    if kind == "string_too_short":
        return "must not be empty" if value == "" else str(err["msg"])
    if kind == "too_short":
        if hasattr(value, "__len__") and len(value) == 0:
            return "must not be empty"
        return f"needs at least {ctx.get('min_length')} items, got {show(value)}"
    if kind == "too_long":
        return f"has too many items (at most {ctx.get('max_length')}), got {show(value)}"
    if kind in ("path_type", "path_parsing"):
        return f"expected a file path, got {show(value)}"
    return str(err["msg"])
