"""The one configuration system: typed dataclasses, loaded from YAML, overridden from the
command line (``key.sub=value``) or from a mapping; unknown keys are errors.

Every configurable part of wilor_ros (pipeline, tracker, filter, node, training, offline
processing) is a dataclass; ``load_config(cls, yaml_path, overrides)`` builds one (every entry
point goes through it), ``config_to_dict`` writes it back.

Fields declared with ``setting(...)`` carry their description, range or choices and whether a
running part accepts a new value (``live``): ``check_settings`` validates them, and the ROS node
derives its parameters from them (``wilor_ros.ros.parameters``), so a default, a range or a
description is written exactly once.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _yaml() -> Any:
    """PyYAML, imported when a file or a text value is parsed: the pipeline itself (and the bare
    GPU-check environment, which has no PyYAML) builds configurations without it."""
    import yaml

    return yaml


SETTING_KEY = "wilor_setting"  # the dataclasses.field metadata key of a Setting


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a configuration field means and accepts."""

    doc: str  # one sentence for users: what it does, its unit
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    live: bool = False  # a running pipeline/node accepts a new value (its reconfigure() applies it)

    def reason(self, name: str, value: Any) -> str | None:
        """None when ``value`` is acceptable, else why not (bounds are inclusive)."""
        if self.choices is not None and value not in self.choices:
            return f"{name} must be one of {', '.join(self.choices)}, got {value!r}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                return f"{name} must be a finite number, got {value}"
            if self.minimum is not None and value < self.minimum:
                return f"{name} must be >= {self.minimum}, got {value}"
            if self.maximum is not None and value > self.maximum:
                return f"{name} must be <= {self.maximum}, got {value}"
        return None


def setting(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Sequence[str] | None = None,
    live: bool = False,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its ``Setting`` (see the module docstring)."""
    meta = {SETTING_KEY: Setting(doc, minimum, maximum, tuple(choices) if choices else None, live)}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def settings_of(cls: type) -> dict[str, Setting]:
    """Field name -> Setting for the fields of ``cls`` declared with ``setting``."""
    return {f.name: f.metadata[SETTING_KEY] for f in dataclasses.fields(cls) if SETTING_KEY in f.metadata}


def check_bounds(
    obj: Any,
    names: Sequence[str],
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_minimum: bool = False,
) -> None:
    """Raise ValueError naming the first of ``obj``'s fields ``names`` that is not finite or lies
    outside [minimum, maximum] (``open_minimum``: the minimum itself is refused too)."""
    for name in names:
        value = getattr(obj, name)
        low_ok = minimum is None or (value > minimum if open_minimum else value >= minimum)
        if not (math.isfinite(value) and low_ok and (maximum is None or value <= maximum)):
            low = "-inf" if minimum is None else f"{minimum}"
            bounds = f"{'(' if open_minimum else '['}{low}, {'inf' if maximum is None else maximum}]"
            raise ValueError(f"{type(obj).__name__}.{name} must lie in {bounds}, got {value}")


def with_live_fields(current: T, new: T) -> T:
    """``current`` with the ``live`` fields of ``new`` (the changes a running part accepts)."""
    live = {name: getattr(new, name) for name, spec in settings_of(type(current)).items() if spec.live}
    return dataclasses.replace(current, **live)  # type: ignore[type-var]


def check_settings(obj: Any) -> None:
    """Raise ValueError naming the first field of ``obj`` outside its Setting's range/choices."""
    for name, spec in settings_of(type(obj)).items():
        reason = spec.reason(f"{type(obj).__name__}.{name}", getattr(obj, name))
        if reason:
            raise ValueError(reason)


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """A (possibly nested) field of a configuration dataclass, by dotted path."""

    path: str  # e.g. "temporal.tracker.min_hits"
    annotation: Any  # the field's type
    default: Any
    setting: Setting


def field_info(cls: type, path: str) -> FieldInfo:
    """The field at dotted ``path`` below dataclass ``cls`` (nested dataclass fields are walked);
    raises ValueError when the path does not name a field declared with ``setting``."""
    owner: Any = cls
    parts = path.split(".")
    for index, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(owner)}
        if part not in fields:
            raise ValueError(f"{path}: {owner.__name__} has no field {part!r}")
        hint = typing.get_type_hints(owner)[part]
        if index < len(parts) - 1:
            if not dataclasses.is_dataclass(hint):
                raise ValueError(f"{path}: {part} is not a section")
            owner = hint
            continue
        f = fields[part]
        if SETTING_KEY not in f.metadata:
            raise ValueError(f"{path}: the field has no setting(...) declaration")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        return FieldInfo(path, hint, default, f.metadata[SETTING_KEY])
    raise ValueError(f"empty configuration path {path!r}")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML/CLI value to ``annotation``, raising ValueError with the key path."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping for {annotation.__name__}, got {value!r}")
        return from_dict(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or f"{where}: cannot convert {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = _yaml().safe_load(value)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        converted = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if annotation in (int, float):
        what = "an integer" if annotation is int else "a number"
        fractional = annotation is int and isinstance(value, float) and not value.is_integer()
        if isinstance(value, bool) or fractional:
            raise ValueError(f"{where}: expected {what}, got {value!r}")
        try:
            return annotation(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: expected {what}, got {value!r}") from exc
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping; unknown keys raise ValueError."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ValueError(
            f"unknown configuration key(s) {', '.join(prefix + k for k in unknown)} for "
            f"{cls.__name__}; valid keys: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(value, hints[name], key)
    obj = cls(**kwargs)
    check_settings(obj)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for YAML/JSON."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(cfg)


def documented_yaml(obj: Any, indent: int = 0) -> list[str]:
    """YAML lines of dataclass ``obj``: each field with its Setting's doc as a comment above it,
    nested dataclasses as indented sections."""
    import textwrap

    pad = "  " * indent
    lines: list[str] = []
    specs = settings_of(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            lines += [f"{pad}{f.name}:", *documented_yaml(value, indent + 1)]
            continue
        spec = specs.get(f.name)
        if spec is not None:
            extra = f" [{' | '.join(spec.choices)}]" if spec.choices else ""
            if spec.minimum is not None:
                extra = f" [{spec.minimum} .. {spec.maximum}]"
            lines += [f"{pad}# {line}" for line in textwrap.wrap(spec.doc + extra, 96 - len(pad))]
        dumped = (
            _yaml().safe_dump({f.name: config_to_dict(value)}, default_flow_style=True, width=1000).strip()
        )
        lines.append(pad + dumped[1:-1])
    return lines


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` -> (["a", "b"], 3); the value is parsed as YAML (numbers, booleans, lists)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.subkey=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ValueError(f"override {text!r} has an empty key")
    return path, _yaml().safe_load(raw) if raw.strip() else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a nested dict (in place, returned for chaining)."""
    for text in overrides:
        path, value = parse_override(text)
        _set_dotted(data, ".".join(path), value)
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    section: str = "",
) -> T:
    """THE way to build a configuration: defaults of ``cls``, updated by the YAML file
    (optionally one top-level ``section`` of it), then by ``overrides`` ("a.b=value" strings, or
    a mapping of dotted paths to values, e.g. from command-line flags or ROS parameters).
    Unknown keys anywhere are errors; every value is type-checked and range-checked."""
    data: dict[str, Any] = config_to_dict(cls())
    if path is not None:
        loaded = _yaml().safe_load(Path(path).read_text()) or {}
        if section:
            loaded = loaded.get(section, {})
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        _deep_update(data, loaded)
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            _set_dotted(data, key, value)
    else:
        apply_overrides(data, list(overrides or []))
    return from_dict(cls, data)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = [part for part in key.split(".") if part]
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"override {key!r}: {part} is not a section")
        node = child
    node[parts[-1]] = config_to_dict(value) if dataclasses.is_dataclass(value) else value


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
