"""Dataclass configs: building them from dicts, YAML files and `--set key=value` overrides, with clear errors.

Every config is a plain dataclass. `from_dict` rejects unknown keys (suggesting the closest name), coerces
values to the field's type, and lets the dataclass's own `__post_init__` reject bad values with a GenlabError.
Components nest: a field typed as a dataclass is a section of options (`sampler.eta`), a field typed `dict` a
section its owner validates against a class chosen at build time (a denoiser's options, `net.channels`);
`--set sampler.eta=0.5` and YAML mappings reach both.
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


def as_bool(value: Any, what: str) -> bool:
    """True/False from a bool or one of the words true, false, yes, no, 1, 0; `what` names it in the error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, int)) and str(value).lower() in ("true", "false", "yes", "no", "1", "0"):
        return str(value).lower() in ("true", "yes", "1")
    raise GenlabError(f"{what} expects true or false, got {value!r}")


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
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise GenlabError(f"option '{name}' expects a mapping of options, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        return as_bool(value, f"option '{name}'")
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


def _is_section(tp: Any) -> bool:
    """A field that holds options of its own: a nested dataclass, or a dict validated by its owner."""
    return (isinstance(tp, type) and dataclasses.is_dataclass(tp)) or typing.get_origin(tp) is dict or tp is dict


def _route_dotted(cls: type, d: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
    """{'net': {'mults': [1, 2]}, 'net.channels': 64} -> {'net': {'mults': [1, 2], 'channels': 64}}: a dotted key
    goes into the section its head names, in order, so a later key wins over an earlier one."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in d.items():
        head, dot, rest = key.partition(".")
        if head not in hints:
            raise unknown_key_error(prefix + head, [prefix + n for n in field_names(cls)], where)
        if not _is_section(hints[head]):
            if dot:
                raise GenlabError(f"{where} option '{prefix}{head}' has no sub-options (got '{prefix}{key}')")
            out[key] = value
            continue
        if value is not None and not isinstance(value, dict) and not dot:
            out[key] = value  # an instance of the section's dataclass, or a value _coerce will refuse
            continue
        section = out.get(head)
        section = dataclasses.asdict(section) if dataclasses.is_dataclass(section) else dict(section or {})
        out[head] = {**section, rest: value} if dot else {**section, **(value or {})}
    return out


def from_dict(cls: type[T], d: dict[str, Any] | None, where: str = "model", prefix: str = "") -> T:
    """Build dataclass `cls` from `d`, rejecting unknown keys and coercing types; __post_init__ validates.

    Sections: a field typed as a dataclass is built from a dict the same way, recursively; a field typed
    `dict` takes a dict its owner validates. Dotted keys ('sampler.eta': 0.5, as `--set` gives them) go into
    their section. Errors name keys with their section (`prefix`), as the user writes them."""
    d = _route_dotted(cls, dict(d or {}), where, prefix)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in d.items():
        tp = hints[k]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and not isinstance(v, tp):
            if not isinstance(v, dict):
                raise GenlabError(f"{where} option '{prefix}{k}' expects a mapping of options "
                                  f"({', '.join(field_names(tp))}), got {v!r}")
            kwargs[k] = from_dict(tp, v, where, prefix=f"{prefix}{k}.")
        else:
            kwargs[k] = _coerce(v, tp, prefix + k)
    return cls(**kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config, sections included (tuples become lists)."""
    return _plain(dataclasses.asdict(cfg))


def defaults(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every option of dataclass `cls` with its default, sections flattened to dotted names ('sampler.eta')."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(value):
            out.update(defaults(type(value), prefix=f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out


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


def field_help(cls: type, prefix: str = "") -> dict[str, str]:
    """Each dataclass field's trailing `# comment` in its source (inherited fields too): the options' help;
    sections (fields holding a dataclass) as dotted names, like `defaults`."""
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
    helps = {prefix + k: v for k, v in out.items() if k in set(field_names(cls))}
    for f in dataclasses.fields(cls):
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(value):
            helps.update(field_help(type(value), prefix=f"{prefix}{f.name}."))
    return helps
