"""Hostile configs and command lines: a validation error naming the key, never a traceback.

Every job schema in ``wearssl.config`` is fuzzed with random YAML documents, wrong-typed
values at known keys, unknown keys, non-mapping documents, invalid YAML text and random
``key=value`` overrides. Each must validate or raise ``ConfigError``; the job entry point
turns that into exit code 2 and one line naming the key.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import pkgutil
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import wearssl.config
from wearssl.cli import EXIT_USAGE, main, run_job
from wearssl.config import ConfigError, StrictModel, load_config

REPO = Path(__file__).resolve().parents[1]
FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Smallest valid documents of schemas whose required keys have no default.
MINIMAL_DOCUMENTS: dict[str, dict[str, Any]] = {
    "EvaluateConfig": {"datasets": [{"name": "toy", "synthetic": {}}], "arms": ["forest"]},
    "ExplainConfig": {"model": "runs:/0123abcd", "data": {"corpus": {"path": "data/corpus"}}},
}


def job_schemas() -> list[type[StrictModel]]:
    """Every ``*Config`` schema defined in a module of ``wearssl.config``."""
    found = []
    for module_info in pkgutil.iter_modules(wearssl.config.__path__):
        module = importlib.import_module(f"wearssl.config.{module_info.name}")
        for name, obj in vars(module).items():
            if (
                name.endswith("Config")
                and isinstance(obj, type)
                and issubclass(obj, StrictModel)
                and obj.__module__ == module.__name__
            ):
                found.append(obj)
    return sorted(found, key=lambda schema: schema.__name__)


SCHEMAS = job_schemas()


def minimal_document(schema: type[StrictModel]) -> dict[str, Any]:
    document = MINIMAL_DOCUMENTS.get(schema.__name__, {})
    try:
        schema.model_validate(document)
    except ValueError:
        pytest.skip(f"no minimal valid document known for {schema.__name__}")
    return document


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a field typed ``Model`` or ``Model | None``, else None."""
    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(candidates) == 1 and models else None


def schema_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, bool]]:
    """(dotted key, is a section) for every field, sections recursed into."""
    for name, field in model.model_fields.items():
        dotted = prefix + name
        section = model_in(field.annotation)
        yield dotted, section is not None
        if section is not None:
            yield from schema_keys(section, dotted + ".")


def field_names(model: type[BaseModel], section: str) -> set[str]:
    for part in filter(None, section.split(".")):
        model = model_in(model.model_fields[part].annotation)
    return set(model.model_fields)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzed-configs")


def write(directory: Path, text: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def with_key(document: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``document`` with ``dotted`` set to ``value`` (sections made as needed)."""
    result = json.loads(json.dumps(document))
    node = result
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return result


def load_or_config_error(
    schema: type[StrictModel], path: Path | None, overrides: Sequence[str] = ()
) -> str | None:
    """None when the input validates, the ConfigError's message when it does not."""
    try:
        load_config(schema, path, overrides)
    except ConfigError as err:
        return str(err)
    return None


def names_key(message: str, dotted: str) -> bool:
    """The message names the key, or a key of its section (required sibling, cross-field rule)."""
    parts = dotted.split(".")
    ancestors = [".".join(parts[:i]) for i in range(1, len(parts))]
    return dotted in message or any(f"key '{a}" in message for a in ["<root>", *ancestors])


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
unknown_names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
# Printable ASCII, so that the JSON of a value reads back as the same value in an override.
plain_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10)
plain_scalars = st.none() | st.booleans() | st.integers() | plain_text
wrong_for_leaf = st.dictionaries(plain_text, plain_scalars, min_size=1, max_size=3)
wrong_for_section = (
    st.booleans() | st.integers() | plain_text | st.lists(plain_scalars, min_size=1, max_size=3)
)
each_schema = pytest.mark.parametrize("schema", SCHEMAS, ids=lambda schema: schema.__name__)


def test_every_job_schema_is_fuzzed() -> None:
    assert {"PretrainConfig", "EvaluateConfig"} <= {schema.__name__ for schema in SCHEMAS}


@each_schema
@FUZZ
@given(document=values)
def test_random_documents_validate_or_raise_config_error(
    schema: type[StrictModel], config_dir: Path, document: Any
) -> None:
    message = load_or_config_error(schema, write(config_dir, yaml.safe_dump(document)))
    if not isinstance(document, dict) and document is not None:
        assert message is not None and "must hold a mapping" in message


@each_schema
@FUZZ
@given(text=st.text(max_size=200))
def test_random_text_validates_or_raises_config_error(
    schema: type[StrictModel], config_dir: Path, text: str
) -> None:
    path = write(config_dir, text)
    message = load_or_config_error(schema, path)
    assert message is None or str(path) in message


@each_schema
@FUZZ
@given(data=st.data())
def test_unknown_keys_are_named(schema: type[StrictModel], config_dir: Path, data) -> None:
    sections = [""] + [key + "." for key, is_section in schema_keys(schema) if is_section]
    section = data.draw(st.sampled_from(sections))
    name = data.draw(unknown_names.filter(lambda n: n not in field_names(schema, section)))
    dotted = section + name
    document = with_key(minimal_document(schema), dotted, data.draw(values))
    message = load_or_config_error(schema, write(config_dir, yaml.safe_dump(document)))
    assert message is not None and f"unknown key '{dotted}'" in message
    override = f"{dotted}={json.dumps(data.draw(scalars))}"
    base = write(config_dir, yaml.safe_dump(minimal_document(schema)))
    message = load_or_config_error(schema, base, [override])
    assert message is not None and f"unknown key '{dotted}'" in message


@each_schema
@FUZZ
@given(data=st.data())
def test_wrong_typed_values_at_known_keys_are_named(
    schema: type[StrictModel], config_dir: Path, data
) -> None:
    dotted, is_section = data.draw(st.sampled_from(list(schema_keys(schema))))
    value = data.draw(wrong_for_section if is_section else wrong_for_leaf)
    document = with_key(minimal_document(schema), dotted, value)
    message = load_or_config_error(schema, write(config_dir, yaml.safe_dump(document)))
    assert message is not None and dotted in message
    base = write(config_dir, yaml.safe_dump(minimal_document(schema)))
    message = load_or_config_error(schema, base, [f"{dotted}={json.dumps(value)}"])
    assert message is not None and dotted in message


@each_schema
@FUZZ
@given(data=st.data())
def test_random_values_at_known_keys_validate_or_name_the_key(
    schema: type[StrictModel], config_dir: Path, data
) -> None:
    dotted, _ = data.draw(st.sampled_from(list(schema_keys(schema))))
    document = with_key(minimal_document(schema), dotted, data.draw(values))
    message = load_or_config_error(schema, write(config_dir, yaml.safe_dump(document)))
    assert message is None or names_key(message, dotted), message


@each_schema
@FUZZ
@given(overrides=st.lists(st.text(max_size=40), max_size=4))
def test_random_override_strings_validate_or_raise_config_error(
    schema: type[StrictModel], config_dir: Path, overrides: list[str]
) -> None:
    base = write(config_dir, yaml.safe_dump(minimal_document(schema)))
    load_or_config_error(schema, base, overrides)


@each_schema
@FUZZ
@given(data=st.data())
def test_override_values_of_any_yaml_text_validate_or_name_the_key(
    schema: type[StrictModel], config_dir: Path, data
) -> None:
    dotted, _ = data.draw(st.sampled_from(list(schema_keys(schema))))
    raw = data.draw(st.text(max_size=30) | values.map(json.dumps))
    base = write(config_dir, yaml.safe_dump(minimal_document(schema)))
    message = load_or_config_error(schema, base, [f"{dotted}={raw}"])
    assert message is None or names_key(message, dotted), message


NASTY_DOCUMENTS = {
    "python object tag": "name: !!python/object/apply:os.system ['true']\n",
    "undefined alias": "name: *nowhere\n",
    "NUL byte": "name: a\0b\n",
    "two documents": "name: a\n---\nname: b\n",
    "list as a key": "? [a, b]\n: 1\n",
    "tab indentation": "optim:\n\tlr: 0.1\n",
    "bad int tag": "name: !!int abc\n",
    "bad float tag": "name: !!float abc\n",
    "impossible date": "name: 2001-02-30\n",
    "impossible timestamp": "name: 2001-13-01 10:00:00\n",
    "deep nesting": "name: " + "[" * 1500 + "]" * 1500 + "\n",
}


@each_schema
@pytest.mark.parametrize("text", NASTY_DOCUMENTS.values(), ids=NASTY_DOCUMENTS.keys())
def test_hostile_yaml_documents_raise_config_error_naming_the_file(
    schema: type[StrictModel], config_dir: Path, text: str
) -> None:
    path = write(config_dir, text)
    message = load_or_config_error(schema, path)
    assert message is not None and str(path) in message


NASTY_OVERRIDES = {
    "bad int tag": ("name=!!int abc", "name"),
    "bad float tag": ("name=!!float abc", "name"),
    "impossible date": ("name=2001-02-30", "name"),
    "deep nesting": ("name=" + "[" * 1500, "name"),
    "python object tag": ("name=!!python/object/apply:os.system ['true']", "name"),
    "no equals sign": ("name", "'name'"),
    "empty key": ("=x", "'=x'"),
    "empty key part": ("optim..lr=1", "'optim..lr=1'"),
}


@each_schema
@pytest.mark.parametrize(
    ("override", "named"), NASTY_OVERRIDES.values(), ids=NASTY_OVERRIDES.keys()
)
def test_hostile_overrides_validate_or_raise_config_error_naming_them(
    schema: type[StrictModel], config_dir: Path, override: str, named: str
) -> None:
    base = write(config_dir, yaml.safe_dump(minimal_document(schema)))
    message = load_or_config_error(schema, base, [override])
    assert message is None or named in message


def recording_job(seen: list[Any]):
    def job(cfg: Any) -> None:
        seen.append(cfg)

    return job


def run_quietly(*args: Any) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = run_job(*args)
    return code, stderr.getvalue()


@each_schema
@FUZZ
@given(data=st.data())
def test_run_job_exits_2_naming_a_bad_key_and_never_runs_the_job(
    schema: type[StrictModel], config_dir: Path, data
) -> None:
    dotted, is_section = data.draw(st.sampled_from(list(schema_keys(schema))))
    value = data.draw(wrong_for_section if is_section else wrong_for_leaf)
    base = write(config_dir, yaml.safe_dump(minimal_document(schema)))
    seen: list[Any] = []
    code, stderr = run_quietly(
        schema, str(base), [f"{dotted}={json.dumps(value)}"], recording_job(seen)
    )
    assert code == EXIT_USAGE and seen == []
    assert stderr.startswith("error: ") and dotted in stderr and "Traceback" not in stderr


@each_schema
def test_run_job_runs_the_job_with_the_validated_config(
    schema: type[StrictModel], config_dir: Path
) -> None:
    base = write(config_dir, yaml.safe_dump(minimal_document(schema)))
    seen: list[Any] = []
    code, _ = run_quietly(schema, str(base), ["name=fuzzed"], recording_job(seen))
    assert code == 0 and len(seen) == 1
    assert isinstance(seen[0], schema) and seen[0].name == "fuzzed"


def run_main(argv: list[str]) -> tuple[int, str, list[Any]]:
    """``wearssl pretrain ARGV`` (what ``jobs/pretrain.py`` runs) with training replaced:
    (exit code, stderr, configs seen)."""
    seen: list[Any] = []
    stderr = io.StringIO()
    with (
        mock.patch("wearssl.pretrain.train.run_pretraining", recording_job(seen)),
        contextlib.redirect_stderr(stderr),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            code = main(["pretrain", *argv])
        except SystemExit as exit_:
            code = exit_.code
    return code, stderr.getvalue(), seen


def ends_before_running(item: str) -> bool:
    """``-h``, ``-hx`` or an abbreviation of ``--help`` or ``--print-config``: the job
    prints its help or config and exits 0 without running."""
    abbreviates = len(item) >= 3 and (
        "--help".startswith(item) or "--print-config".startswith(item)
    )
    return item.startswith("-h") or abbreviates


argv_items = (
    st.text(max_size=30)
    | st.sampled_from(["--config", "-h", "--", "-x", "optim.epochs=1", "name=a b"])
    | st.tuples(unknown_names, st.text(max_size=10)).map(lambda kv: "=".join(kv))
)


@FUZZ
@given(argv=st.lists(argv_items, max_size=5))
def test_the_pretrain_entry_point_exits_0_or_2_on_any_command_line(argv: list[str]) -> None:
    argv = [a for a in argv if not ends_before_running(a)]
    code, stderr, seen = run_main(argv)
    assert code in (0, EXIT_USAGE), stderr
    assert (code == 0) == (len(seen) == 1)
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.epochz=3", "optim.epochz"),
        ("optim.epochs=three", "optim.epochs"),
        ("sampling.weighted=[1, 2]", "sampling.weighted"),
        ("runtime.num_workers=0", "runtime.num_workers"),
        ("tasks=[aot, aot]", "tasks"),
        ("optim=3", "optim"),
    ],
)
def test_the_pretrain_entry_point_names_the_bad_key(override: str, key: str) -> None:
    code, stderr, seen = run_main([override])
    assert code == EXIT_USAGE and seen == []
    assert key in stderr and stderr.count("\n") == 1


def test_the_pretrain_entry_point_runs_the_quickstart_config() -> None:
    code, _, seen = run_main(["optim.epochs=2"])
    assert code == 0 and seen[0].optim.epochs == 2
