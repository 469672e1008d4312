"""Loading a job configuration: YAML file, then ``key=value`` overrides, then validation.

Every failure is a :class:`ConfigError` whose message names the file and the dotted key,
so a user never sees a traceback from deep inside Ray or torch for a typo.

Path-valued keys are typed :data:`ConfigPath`, :data:`WeightsSpec` or :data:`TrackingUri`:
their values must lie within the data and storage roots of :mod:`wearssl.config.roots` (the
working directory, the temp directory, ``WEARSSL_STORAGE`` and ``WEARSSL_DATA_ROOTS``).
The roots are those of the validating process, unless the validation context names them
(``load_config(..., roots=...)`` or ``model_validate(data, context={"roots": [...]})``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)

from wearssl.config.roots import (
    default_roots,
    outside_roots,
    tracking_outside_roots,
    weights_outside_roots,
)

Schema = TypeVar("Schema", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the offending key."""


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False
    )


ROOTS_CONTEXT = "roots"
# A job, run or dataset name, used as one folder name under an output or storage folder:
# letters, digits, '_', '-' and '.', but never '.' or '..' (which would leave that folder).
NAME_PATTERN = r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"


def validation_roots(info: ValidationInfo | None) -> list[str]:
    """The roots named by the validation context, else those of this process now."""
    context = info.context if info is not None else None
    if isinstance(context, Mapping) and context.get(ROOTS_CONTEXT) is not None:
        return list(context[ROOTS_CONTEXT])
    return default_roots()


def _roots_check(problem: Callable[[str, list[str]], str | None]):
    def check(value: str, info: ValidationInfo) -> str:
        reason = problem(value, validation_roots(info))
        if reason is not None:
            raise ValueError(reason)
        return value

    return AfterValidator(check)


# Seeds feed torch, NumPy and Ray Data generators and are offset by epoch, rank or repeat:
# 32 bits keep every derived seed within what each of them accepts.
SEED_LIMIT = 2**32
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]

# A local path or object-store URI that a job reads or writes: within the roots.
ConfigPath = Annotated[str, _roots_check(outside_roots)]
# models:/..., runs:/... (MLflow references, not places) or a checkpoint file within the roots.
WeightsSpec = Annotated[str, _roots_check(weights_outside_roots)]
# An MLflow tracking URI: a server, or a local store (folder, file:, sqlite:) within the roots.
TrackingUri = Annotated[str, _roots_check(tracking_outside_roots)]


def require_distinct(values: list[Any], what: str) -> None:
    """A list-valued key must be non-empty and name each value once."""
    if not values:
        raise ValueError(f"at least one of {what} is needed")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} listed twice: {values}")


def distinct(what: str, key: Callable[[Any], Hashable] | None = None) -> AfterValidator:
    """A list-valued key's validator: :func:`require_distinct` on its values, or on ``key``
    of each (e.g. a dataset's name); use it in the key's ``Annotated`` type."""

    def check(values: list[Any]) -> list[Any]:
        require_distinct(values if key is None else [key(v) for v in values], what)
        return values

    return AfterValidator(check)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, ValueError, RecursionError) as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, got {type(data).__name__}"
        )
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> (["train", "lr"], 0.0003). Values are parsed as YAML scalars/lists."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. train.epochs=3)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError, RecursionError):
        value = raw
    return key.split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for depth, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            dotted = ".".join(path[: depth + 1])
            raise ConfigError(f"override {'.'.join(path)}: key {dotted} is not a section")
        node = child
    node[path[-1]] = value


def model_types(annotation: Any) -> list[type[BaseModel]]:
    """The config sections an annotation holds (``Section``, ``Section | None``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in model_types(arg)]


def dotted_keys(schema: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key ``schema`` accepts, dotted (``optim.lr``), sections included."""
    keys = []
    for name, field in schema.model_fields.items():
        keys.append(f"{prefix}{name}")
        for section in model_types(field.annotation):
            keys.extend(dotted_keys(section, f"{prefix}{name}."))
    return keys


def suggestion(key: str, valid_keys: Sequence[str]) -> str:
    """`` (did you mean 'optim.lr'?)`` for the valid key nearest ``key``, else ``""``."""
    nearest = difflib.get_close_matches(key, valid_keys, n=1)
    return f" (did you mean '{nearest[0]}'?)" if nearest else ""


def describe_errors(
    err: ValidationError, source: str, schema: type[BaseModel] | None = None
) -> str:
    lines = []
    valid_keys = dotted_keys(schema) if schema is not None else []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'{suggestion(key, valid_keys)}")
        else:
            got = item.get("input")
            shown = "" if isinstance(got, Mapping) else f" (got {got!r})"
            lines.append(f"key '{key}': {item['msg']}{shown}")
    return f"invalid config {source}: " + "; ".join(lines)


def load_config(
    schema: type[Schema],
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    roots: Sequence[str] | None = None,
) -> Schema:
    """Read ``path`` (optional), apply ``key=value`` overrides in order, validate by ``schema``.

    Path-valued keys must lie within ``roots`` (default:
    :func:`wearssl.config.roots.default_roots`).
    """
    data = read_yaml(path) if path is not None else {}
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
    return validate_config(schema, data, str(path) if path is not None else "(defaults)", roots)


def with_settings(
    config: Schema, settings: Mapping[str, Any], source: str, roots: Sequence[str] | None = None
) -> Schema:
    """``config`` with dotted-key ``settings`` applied (values as given, not parsed from
    text), validated again; ``source`` names it in errors."""
    data = config.model_dump(mode="json")
    for dotted, value in settings.items():
        apply_override(data, dotted.split("."), value)
    return validate_config(type(config), data, source, roots)


def validate_config(
    schema: type[Schema], data: dict[str, Any], source: str, roots: Sequence[str] | None = None
) -> Schema:
    """``data`` validated by ``schema``, path-valued keys within ``roots``; a
    :class:`ConfigError` naming every bad key otherwise."""
    try:
        return schema.model_validate(data, context=roots_context(roots))
    except ValidationError as err:
        raise ConfigError(describe_errors(err, source, schema)) from None


def roots_context(roots: Sequence[str] | None) -> dict[str, Any]:
    """A validation context checking path-valued keys against ``roots`` (None: the defaults)."""
    return {ROOTS_CONTEXT: list(roots) if roots is not None else default_roots()}


def flatten(config: BaseModel | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"train.lr": 0.001, ...}``, as logged to MLflow params."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat
