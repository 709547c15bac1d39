"""Plans: every decision of a run in one frozen value, written whole into ``manifest.json``.

An experiment turns its command-line ``Config`` into a plan once (``resolve(config) -> Plan``):
image sizes, colour mode, model and its options, precision, Cs, epochs, flip, device, batch sizes,
encoder parameters. The run then reads only the plan. Because the plan is plain data (frozen
dataclasses of numbers, strings, tuples, dicts and nested dataclasses such as
:class:`cnn.train.TrainConfig`), :func:`to_dict` writes it as JSON and :func:`from_dict` rebuilds the
same value from that JSON, so ``python -m experiments.run --rerun RUN/manifest.json`` can redo a run
from its manifest alone.
"""

from __future__ import annotations

import dataclasses
import types
import typing

__all__ = ["to_dict", "from_dict", "PlanError"]


class PlanError(ValueError):
    """A recorded plan that does not match the experiment's plan type (missing or unknown fields,
    values of the wrong kind)."""


def to_dict(plan) -> dict:
    """A dataclass (nested dataclasses, tuples and dicts included) as JSON-ready data."""
    return _plain(plan)


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise PlanError(f"{type(value).__name__} value {value!r} cannot be recorded in a plan; use plain data")


def from_dict(cls, data: dict, *, where: str = "plan"):
    """The ``cls`` instance that :func:`to_dict` wrote as ``data``, fields converted by their type
    hints (lists back to tuples, nested dataclasses rebuilt). Raises :class:`PlanError` naming the
    field for missing, unknown or ill-typed entries."""
    if not isinstance(data, dict):
        raise PlanError(f"{where}: expected an object of fields, found {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PlanError(f"{where}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise PlanError(f"{where}: field {name!r} of {cls.__name__} is missing")
            continue
        values[name] = _typed(hints[name], data[name], f"{where}.{name}")
    return cls(**values)


def _typed(tp, value, where: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _typed(option, value, where)
            except PlanError as exc:
                errors.append(str(exc))
        raise PlanError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise PlanError(f"{where}: expected a list, found {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], v, where) for v in value)
        if args and len(args) != len(value):
            raise PlanError(f"{where}: expected {len(args)} entries, found {len(value)}")
        return tuple(_typed(a, v, where) for a, v in zip(args, value)) if args else tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise PlanError(f"{where}: expected an object, found {value!r}")
        return {k: _loose(v) for k, v in value.items()} if not args else {
            k: _typed(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is typing.Any:
        return _loose(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(tp, type) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise PlanError(f"{where}: expected {getattr(tp, '__name__', tp)}, found {value!r}")
    return value


def _loose(value):
    """Untyped values (``dict[str, Any]``): lists become tuples, as the plans hold them."""
    if isinstance(value, list):
        return tuple(_loose(v) for v in value)
    if isinstance(value, dict):
        return {k: _loose(v) for k, v in value.items()}
    return value
