"""Command-line options generated from a config dataclass: one ``--field-name`` per field.

A field is written once, in its dataclass; the option follows from it:

* flag ``--<name with - for _>`` and ``dest`` = the field name;
* type from the annotation: ``int``, ``float``, ``str``, ``bool`` (``true``/``false``; the bare
  flag means ``true``), tuples
  (comma-separated: ``tuple[str, ...]`` any length, ``tuple[float, float]`` exactly two) and any
  of these ``| None``;
* default from the dataclass (a field without one is a required option);
* ``help``, ``choices``, ``flag``, ``metavar`` and ``type`` (a parse function) from
  ``field(metadata={...})``, where ``choices`` is a registry tuple (``HPO_METHODS``, ``MODELS``...);
  ``metadata={"cli": False}`` keeps a Python-only field (a ``SearchSpace``) off the command line.

``overrides`` (field name → the same keys, plus ``default``) adapts a dataclass the command does
not own or a command whose defaults differ (``train-sparse`` defaults ``--sparse-init`` to ``ER``).

Choices are shown in ``--help`` and as the metavar (``{layered,joint}``) but are *checked by the
dataclass itself* when it is built (``__post_init__`` → :func:`lsh_tune.errors.check_choice`), so
the error has one wording and one home — ``lsh-tune: error: hpo='smac' is not allowed; choose one
of: grid, random, ...`` (exit 2) — whether the value came from the command line or from Python.

Example:
    >>> import argparse
    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     rounds_every: int = 3
    ...     qr: str = field(default="layered", metadata={"choices": ("layered", "joint")})
    >>> p = argparse.ArgumentParser()
    >>> add_dataclass_args(p, Demo)
    ('rounds_every', 'qr')
    >>> dataclass_from_args(Demo, p.parse_args(["--rounds-every", "1"]))
    Demo(rounds_every=1, qr='layered')
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Callable, Iterable, Mapping

__all__ = ["FIELD_KEYS", "add_dataclass_args", "choices_metavar", "dataclass_from_args", "dataclass_values",
           "given_fields", "parse_bool"]

#: The keys an option reads from a field's metadata (or from ``overrides``; there also ``default``).
FIELD_KEYS = ("help", "choices", "flag", "metavar", "type")
_SCALARS = (int, float, str, bool)


_GIVEN = "_lsh_given_fields"


class _Store(argparse.Action):
    """``store``, noting the field as given on the command line (:func:`given_fields`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, _GIVEN, getattr(namespace, _GIVEN, frozenset()) | {self.dest})


def given_fields(args: argparse.Namespace) -> frozenset[str]:
    """The fields whose options appear on the command line, whatever their value (a field left at its
    default is not among them): what ``--resume`` compares with the saved settings."""
    return getattr(args, _GIVEN, frozenset())


def parse_bool(text: str) -> bool:
    """``true/false`` (also ``1/0``, ``yes/no``, ``on/off``) → bool; anything else is an argparse error."""
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use true or false")


def choices_metavar(choices: Iterable[Any]) -> str:
    """``{a,b,c}``: how ``--help`` shows an option's allowed values (as argparse shows ``choices``)."""
    return "{" + ",".join(map(str, choices)) + "}"


def _scalar_parser(kind: type) -> Callable[[str], Any]:
    """``int``/``float``/``str`` themselves (argparse names them in its errors), ``bool`` → :func:`parse_bool`."""
    return parse_bool if kind is bool else kind


def _item(kind: type, text: str) -> Any:
    """One tuple item; a bad one is an argparse error naming the value and the type."""
    try:
        return _scalar_parser(kind)(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None


def _tuple_parser(items: tuple) -> Callable[[str], tuple]:
    """Comma-separated values; ``tuple[X, ...]`` any number (empty items dropped), else exactly len(items)."""
    variadic = len(items) == 2 and items[1] is Ellipsis
    kinds = items[:1] if variadic else items
    for kind in kinds:
        if kind not in _SCALARS:
            raise TypeError(f"tuple items of type {kind!r} have no command-line form")

    def parse(text: str) -> tuple:
        parts = [s.strip() for s in text.split(",")]
        if variadic:
            return tuple(_item(kinds[0], s) for s in parts if s)
        if len(parts) != len(kinds):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; give {len(kinds)} comma-separated values")
        return tuple(_item(k, s) for k, s in zip(kinds, parts))

    return parse


def _without_none(annotation: Any) -> Any:
    """``X | None`` / ``Optional[X]`` → ``X``; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _parser_for(annotation: Any, name: str) -> Callable[[str], Any]:
    kind = _without_none(annotation)
    if kind in _SCALARS:
        return _scalar_parser(kind)
    if typing.get_origin(kind) is tuple:
        return _tuple_parser(typing.get_args(kind))
    raise TypeError(f"field {name!r}: type {annotation!r} has no command-line form; exclude it or give a 'type'")


def _shown(value: Any) -> str:
    """A default as it would be typed on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(_shown, value))
    return str(value)


def _default(f: dataclasses.Field, spec: Mapping[str, Any]) -> tuple[bool, Any]:
    """(required, default) of a field: the override, else the dataclass's default."""
    if "default" in spec:
        return False, spec["default"]
    if f.default is not dataclasses.MISSING:
        return False, f.default
    if f.default_factory is not dataclasses.MISSING:
        return False, f.default_factory()
    return True, None


def _option(f: dataclasses.Field, annotation: Any, spec: Mapping[str, Any], optional: bool) -> tuple[str, dict]:
    """The flag and the ``add_argument`` keywords of one field."""
    required, default = (False, None) if optional else _default(f, spec)
    kwargs: dict[str, Any] = {"dest": f.name, "type": spec.get("type") or _parser_for(annotation, f.name),
                              "action": _Store}
    help_text = spec.get("help", "")
    if required:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
        if default is not None:
            help_text = f"{help_text} (default: {_shown(default)})".strip()
    choices = spec.get("choices")
    if choices is not None:
        kwargs["metavar"] = choices_metavar(choices)
    elif _without_none(annotation) is bool:
        kwargs["metavar"] = choices_metavar(("true", "false"))
        kwargs.update(nargs="?", const=True)  # a bare ``--flag`` means true
    if "metavar" in spec:
        kwargs["metavar"] = spec["metavar"]
    kwargs["help"] = help_text.replace("%", "%%") or None  # argparse formats help with %
    return spec.get("flag") or "--" + f.name.replace("_", "-"), kwargs


def _selected(cls: type, only: Iterable[str] | None, exclude: Iterable[str]) -> list[dataclasses.Field]:
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    names = [n for n, f in by_name.items() if f.metadata.get("cli", True)] if only is None else list(only)
    unknown = sorted((set(names) | set(exclude)) - set(by_name))
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {unknown}")
    return [by_name[n] for n in names if n not in set(exclude)]


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, *,
                       only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                       overrides: Mapping[str, Mapping[str, Any]] | None = None,
                       optional: bool = False) -> tuple[str, ...]:
    """Add one option per field of the dataclass ``cls`` to ``parser`` (in field order).

    Args:
        parser: a parser (or an argument group of one).
        cls: the config dataclass.
        only: the fields to expose, in this order (default: all but those marked ``"cli": False``).
        exclude: fields left out (Python-only settings).
        overrides: per field, keys of :data:`FIELD_KEYS` or ``default`` that replace the metadata's.
        optional: every option defaults to ``None`` ("keep the base value"), for overriding an
            existing instance (``dataclasses.replace``) rather than building a new one.

    Returns:
        The names of the fields added (their ``dest``).

    Raises:
        ValueError: ``only``/``exclude``/``overrides`` name a field ``cls`` lacks.
        TypeError: a field's type has no command-line form and no ``type`` was given.
    """
    overrides = dict(overrides or {})
    fields = _selected(cls, only, exclude)
    stray = sorted(set(overrides) - {f.name for f in fields})
    if stray:
        raise ValueError(f"overrides for fields not added from {cls.__name__}: {stray}")
    hints = typing.get_type_hints(cls)
    for f in fields:
        spec = {**{k: v for k, v in f.metadata.items() if k in FIELD_KEYS}, **overrides.get(f.name, {})}
        flag, kwargs = _option(f, hints[f.name], spec, optional)
        parser.add_argument(flag, **kwargs)
    return tuple(f.name for f in fields)


def dataclass_values(cls: type, args: argparse.Namespace, *, drop_none: bool = False) -> dict[str, Any]:
    """The values of ``cls``'s fields that ``args`` holds (``drop_none``: only those given)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return {k: v for k, v in values.items() if v is not None} if drop_none else values


def dataclass_from_args(cls: type, args: argparse.Namespace, **extra: Any):
    """``cls`` built from the parsed options (and ``extra``, which wins); the dataclass validates.

    Raises:
        LSHUsageError: whatever ``cls.__post_init__`` rejects (one-line error, exit 2 on the CLI).
    """
    return cls(**{**dataclass_values(cls, args), **extra})
