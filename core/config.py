"""Typed params blocks: a dataclass declares a block, `parse_block` checks a mapping against it.

Every `params.yaml` block (and every extractor block inside `features`) is declared once as a
dataclass. A field's annotation says what a value may be (`bool`, `int`, `float`, `str`, `list[...]`,
a nested dataclass, unions, `| None` for null); `setting(...)` adds the rules the annotation cannot
say. `parse_block(Cls, block, "cut")` then rejects unknown keys, missing required keys and bad values
with one `ConfigError` that names the full params path and what is allowed:

    params.yaml: 'features.audio.level' is 'x'; allowed values: functionals, lld

Values are kept exactly as written (an integer given for a number stays an integer), because blocks
are hashed into cache keys and recorded in output files. Rules of `setting(...)`:

- `min` / `max` (inclusive), `above` / `below` (exclusive), `positive` (> 0): ranges for numbers
  (for a list, for each item; for a `dict[str, T]`, for each value, reported under its own key);
- `choices`: the allowed values (the message lists them in order);
- `non_empty`: for strings and lists;
- `check`: a function returning what is wrong with a value (or None); it owns the field's check;
- `runtime`: changes speed or placement but not results (left out of `recorded`);
- `omit_default`: left out of `recorded` while it holds its default, so records made before the
  field existed stay valid.

A field whose annotation is a dataclass is a nested block, parsed the same way under
`<path>.<field>`: given, it must be a mapping (or null, where the annotation admits None); left
out, it takes its default (`Block | None = None` for an optional one). `keys_block` declares a
block by its keys alone, for blocks whose values the code that reads them still checks itself.

Cross-field rules go in the dataclass's `__post_init__`, raising `ConfigError.at(field, detail)`
with the field's own name; `parse_block` adds the block's path. This module imports nothing from
the project, so `pipeline/`, `extractors/` and `models/` can all use it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

T = typing.TypeVar("T")
SOURCE = "params.yaml"
RULES = frozenset({"min", "max", "above", "below", "positive", "choices", "non_empty", "check", "runtime",
                   "omit_default"})


class ConfigError(ValueError):
    """A configuration value is missing or not allowed; the message names the key.

    `key` is the dotted path of the value and `detail` what is wrong with it, so code that knows where
    a block sits can report an error under the block's full path (`within`). `allowed` is set for an
    unknown key: the keys the block accepts.
    """

    def __init__(self, message: str, key: str | None = None, detail: str | None = None,
                 allowed: tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.detail = detail
        self.allowed = allowed

    def __reduce__(self) -> tuple[Any, ...]:
        return (ConfigError, (str(self), self.key, self.detail, self.allowed))

    @classmethod
    def at(cls, key: str, detail: str) -> ConfigError:
        """`params.yaml: '<key>' <detail>`."""
        return cls(f"{SOURCE}: '{key}' {detail}", key, detail)

    @classmethod
    def unknown(cls, key: str, allowed: tuple[str, ...]) -> ConfigError:
        where = key.rpartition(".")[0]
        inside = f" in {where!r}" if where else ""
        detail = f"is not a known key; allowed keys{inside}: {', '.join(allowed)}"
        return cls(f"{SOURCE}: unknown key '{key}'; allowed keys{inside}: {', '.join(allowed)}", key, detail, allowed)

    def within(self, prefix: str) -> ConfigError:
        """The same problem reported under `prefix.<key>` (for a block parsed without its path)."""
        if self.key is None or self.detail is None:
            return self
        key = f"{prefix}.{self.key}" if prefix else self.key
        return ConfigError.unknown(key, self.allowed) if self.allowed is not None else ConfigError.at(key, self.detail)


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | Any = dataclasses.MISSING,
            **rules: Any) -> Any:
    """A dataclass field with a default (or `factory`) and the rules listed in the module docstring."""
    unknown = sorted(set(rules) - RULES)
    if unknown:
        raise TypeError(f"unknown setting rule {unknown[0]!r}; rules: {', '.join(sorted(RULES))}")
    return dataclasses.field(default=default, default_factory=factory, metadata=rules)


def keys_block(name: str, keys: Iterable[str | tuple[str, Any]]) -> type:
    """A block declared by its keys alone (a name, or a name and its block's class): unknown keys are
    rejected, every value is accepted, and each key is optional. For blocks whose values the code
    reading them still checks by hand."""
    fields = [(key, Any, dataclasses.field(default=None)) if isinstance(key, str)
              else (key[0], key[1], dataclasses.field(default=None)) for key in keys]
    return dataclasses.make_dataclass(name, fields, frozen=True)


def parse_block(cls: type[T], block: Any, where: str = "") -> T:
    """`cls` built from `block`, or ConfigError naming `where.<key>` for the first problem.

    Unknown keys are reported first (alphabetically first of them), then fields in declaration
    order, then the cross-field checks of `cls.__post_init__`.
    """
    names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    if not isinstance(block, Mapping):
        raise ConfigError.at(where, f"must be a mapping with keys {', '.join(names)}; got {block!r}")
    unknown = sorted(str(key) for key in block if key not in names)
    if unknown:
        raise ConfigError.unknown(_path(where, unknown[0]), names)
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        path = _path(where, spec.name)
        if spec.name not in block:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{SOURCE}: missing key '{path}'", path, "is missing")
            continue
        value = block[spec.name]
        kind = hints[spec.name]
        nested = _nested_block(kind)
        if nested is not None:
            values[spec.name] = None if value is None and _nullable(kind) else parse_block(nested, value, path)
            continue
        detail = problem(value, kind, spec.metadata)
        if detail is not None:
            raise ConfigError.at(path, detail)
        for key, item, item_kind in [] if "check" in spec.metadata else _mapping_items(value, kind):
            detail = problem(item, item_kind, spec.metadata)
            if detail is not None:
                raise ConfigError.at(_path(path, str(key)), detail)
        values[spec.name] = value
    try:
        return cls(**values)
    except ConfigError as error:
        raise error.within(where) from None


def problem(value: Any, kind: Any, rules: Mapping[str, Any]) -> str | None:
    """What is wrong with `value` for annotation `kind` and `rules` (None when it is fine)."""
    if "check" in rules:
        return rules["check"](value)
    if "choices" in rules:
        allowed = list(rules["choices"])
        if value is None and _nullable(kind) or value in allowed:
            return None
        return f"is {value!r}; allowed values: {', '.join(map(str, allowed))}"
    if _fits(value, kind, rules):
        return None
    return f"must be {describe(kind, rules)}, got {value!r}"


def describe(kind: Any, rules: Mapping[str, Any]) -> str:
    """`kind` and `rules` in words: "an integer >= 1 or null", "a non-empty list of integers"."""
    options = [option for option in _options(kind) if option is not type(None)]
    words = " or ".join(_describe_one(option, rules) for option in options)
    return words + (" or null" if _nullable(kind) else "")


def as_block(settings: Any) -> dict[str, Any]:
    """Every field of a parsed block as a plain mapping (nested blocks too), in declaration order."""
    return {spec.name: _plain(getattr(settings, spec.name)) for spec in dataclasses.fields(settings)}


def recorded(settings: Any) -> dict[str, Any]:
    """The fields that determine results: `runtime` ones left out, `omit_default` ones while default."""
    out = {}
    for spec in dataclasses.fields(settings):
        value = getattr(settings, spec.name)
        if spec.metadata.get("runtime"):
            continue
        if spec.metadata.get("omit_default") and value == _default(spec):
            continue
        out[spec.name] = _plain(value)
    return out


# -- internals -------------------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}
_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _default(spec: dataclasses.Field) -> Any:
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def _plain(value: Any) -> Any:
    return as_block(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def _mapping_items(value: Any, kind: Any) -> list[tuple[Any, Any, Any]]:
    """(key, value, value type) of a `dict[str, T]` field's entries, each checked under its own key."""
    if not isinstance(value, Mapping):
        return []
    for option in _options(kind):
        if typing.get_origin(option) in (dict, Mapping) and len(typing.get_args(option)) == 2:
            return [(key, item, typing.get_args(option)[1]) for key, item in value.items()]
    return []


def _nested_block(kind: Any) -> type | None:
    """The dataclass a field holds (`Block` or `Block | None`), if any."""
    blocks = [option for option in _options(kind) if dataclasses.is_dataclass(option) and isinstance(option, type)]
    return blocks[0] if blocks else None


def _options(kind: Any) -> tuple[Any, ...]:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return typing.get_args(kind)
    return (kind,)


def _nullable(kind: Any) -> bool:
    return kind is Any or type(None) in _options(kind)


def _fits(value: Any, kind: Any, rules: Mapping[str, Any]) -> bool:
    if value is None:
        return _nullable(kind)
    return any(_fits_one(value, option, rules) for option in _options(kind) if option is not type(None))


def _fits_one(value: Any, kind: Any, rules: Mapping[str, Any]) -> bool:
    if kind is Any or kind is object:
        return True
    origin = typing.get_origin(kind) or kind
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        return (isinstance(value, list) and not (rules.get("non_empty") and not value)
                and all(_fits_one(v, item, rules) for v in value))
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    if kind is bool:
        return isinstance(value, bool)
    if kind is str:
        return isinstance(value, str) and not (rules.get("non_empty") and not value)
    if kind in (int, float):
        number = isinstance(value, int) if kind is int else isinstance(value, (int, float))
        return number and not isinstance(value, bool) and _in_range(value, rules)
    return isinstance(value, kind)


def _in_range(value: float, rules: Mapping[str, Any]) -> bool:
    """A one-sided limit rejects only values past it (NaN passes); a two-sided range admits only
    values inside it (NaN fails), as `not low <= value < high` always did."""
    low = [(name, rules[name]) for name in ("positive", "min", "above") if name in rules]
    high = [(name, rules[name]) for name in ("max", "below") if name in rules]
    inside = {"positive": lambda v, _: v > 0, "min": lambda v, m: v >= m, "above": lambda v, m: v > m,
              "max": lambda v, m: v <= m, "below": lambda v, m: v < m}
    outside = {"positive": lambda v, _: v <= 0, "min": lambda v, m: v < m, "above": lambda v, m: v <= m,
               "max": lambda v, m: v > m, "below": lambda v, m: v >= m}
    if low and high:
        return all(inside[name](value, limit) for name, limit in low + high)
    return not any(outside[name](value, limit) for name, limit in low + high)


def _describe_one(kind: Any, rules: Mapping[str, Any]) -> str:
    origin = typing.get_origin(kind) or kind
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        noun = _PLURAL.get(item, "values") + (_range_words(rules) if item in (int, float) else "")
        return ("a non-empty list of " if rules.get("non_empty") else "a list of ") + noun
    if origin in (dict, Mapping):
        return "a mapping"
    if kind is bool:
        return "true or false"
    if kind is str:
        return "a non-empty string" if rules.get("non_empty") else "a string"
    if kind in (int, float):
        noun = "integer" if kind is int else "number"
        if rules.get("positive"):
            return f"a positive {noun}"
        return f"{'an' if kind is int else 'a'} {noun}{_range_words(rules)}"
    return f"a {getattr(kind, '__name__', kind)}"


def _range_words(rules: Mapping[str, Any]) -> str:
    low = ("[", rules["min"]) if "min" in rules else ("(", rules["above"]) if "above" in rules else None
    high = ("]", rules["max"]) if "max" in rules else (")", rules["below"]) if "below" in rules else None
    if low and high:
        return f" in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f" {'<=' if high[0] == ']' else '<'} {high[1]}"
    return ""
