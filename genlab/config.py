"""Dataclass configs: building them from dicts, YAML files and `--set key=value` overrides, with clear errors.

Every config is a plain dataclass. `from_dict` rejects unknown keys (suggesting the closest name), coerces
values to the field's type, and lets the dataclass's own `__post_init__` reject bad values with a GenlabError.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import GenlabError

T = TypeVar("T")


def check(ok: bool, message: str) -> None:
    """Raise a one-line GenlabError unless `ok`. Used by configs' __post_init__."""
    if not ok:
        raise GenlabError(message)


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def unknown_key_error(key: str, valid: list[str], where: str) -> GenlabError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return GenlabError(f"unknown {where} option '{key}': {hint}valid options: {', '.join(valid)}")


def _coerce(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(value, a, name)
            except GenlabError as e:
                errors.append(str(e))
        raise GenlabError(errors[0])
    if origin in (tuple, list):
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value] if not isinstance(value, str) else yaml.safe_load(f"[{value.strip('[]()')}]")
        if not isinstance(value, (list, tuple)):
            raise GenlabError(f"option '{name}' expects a list, got {value!r}")
        item = args[0] if args else Any
        out = [_coerce(v, item, name) for v in value]
        return tuple(out) if origin is tuple else out
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise GenlabError(f"option '{name}' expects true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise GenlabError(f"option '{name}' expects an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise GenlabError(f"option '{name}' expects an integer, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise GenlabError(f"option '{name}' expects an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise GenlabError(f"option '{name}' expects a number, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise GenlabError(f"option '{name}' expects a number, got {value!r}") from None
        if not math.isfinite(f):
            raise GenlabError(f"option '{name}' must be a finite number, got {value!r}")
        return f
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise GenlabError(f"option '{name}' expects a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], d: dict[str, Any] | None, where: str = "model") -> T:
    """Build dataclass `cls` from `d`, rejecting unknown keys and coercing types; __post_init__ validates."""
    d = dict(d or {})
    names = field_names(cls)
    for key in d:
        if key not in names:
            raise unknown_key_error(key, names, where)
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], k) for k, v in d.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def parse_overrides(items: list[str] | None, flag: str = "--set") -> dict[str, Any]:
    """['beta=4', 'train.lr=1e-3', 'data.size=32'] -> {'beta': 4, 'train.lr': 0.001, 'data.size': 32}."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise GenlabError(f"{flag} expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise GenlabError(f"{flag} expects key=value, got '{item}'")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file: top-level keys are model options, or sections `model:`, `train:`, `data:`."""
    p = Path(path)
    if not p.is_file():
        raise GenlabError(f"config file not found: {p}")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0]
        raise GenlabError(f"config file {p} is not valid YAML: {first}") from None
    if not isinstance(d, dict):
        raise GenlabError(f"config file {p} must hold a mapping of options, got {type(d).__name__}")
    return d


def split_sections(flat: dict[str, Any], sections: tuple[str, ...] = ("model", "train", "data")) -> dict:
    """Split {'beta': 4, 'train.lr': 1e-3, 'model': {...}} into {'model': {...}, 'train': {...}, 'data': {...}}."""
    out: dict[str, dict[str, Any]] = {s: {} for s in sections}
    for key, value in flat.items():
        if key in sections and isinstance(value, dict):
            out[key].update(value)
            continue
        head, _, rest = key.partition(".")
        if rest and head in sections:
            out[head][rest] = value
        else:
            out[sections[0]][key] = value
    return out


def field_help(cls: type) -> dict[str, str]:
    """Each dataclass field's trailing `# comment` in its source (inherited fields too): the options' help."""
    import inspect
    import io
    import tokenize

    out: dict[str, str] = {}
    for klass in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        line_name: dict[int, str] = {}
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.start[0] not in line_name:
                line_name[tok.start[0]] = tok.string
            elif tok.type == tokenize.COMMENT and tok.start[0] in line_name:
                out[line_name[tok.start[0]]] = tok.string.lstrip("# ").strip()
    names = set(field_names(cls))
    return {k: v for k, v in out.items() if k in names}
