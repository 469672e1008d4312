"""Refusing config values that point outside the configured data and storage roots.

A config is often written by someone other than the person who runs it (a shared
sweep file, a path pasted into a job submission). A value such as
``corpus: ../../home/alice/raw`` or ``runtime.storage_path: /etc`` must not make a job
read or write outside the places the operator meant it to touch, so every path-valued
config key is checked against a list of roots:

- the working directory and everything under it (a job runs from the repo root);
- the system temporary directory (``tempfile.gettempdir()``, where tests write);
- ``WEARSSL_STORAGE`` when set (the cluster's shared storage, e.g. ``s3://bucket/wearssl``);
- every entry of ``WEARSSL_DATA_ROOTS``, separated by ``os.pathsep``; URIs such as
  ``s3://bucket/corpus`` or ``gs://bucket/runs`` are kept whole even though ``:`` is the
  separator on POSIX.

Object-store URIs are allowed only under a root of the same scheme and bucket that is
configured explicitly: there is no default ``s3://`` or ``gs://`` root. Local paths are
resolved (``~`` expanded, ``..`` and symlinks followed) before the comparison, so neither
``..`` nor a symlink inside a root can lead out of it.

The config schemas (:mod:`wearssl.config`) type every path-valued key with
:data:`wearssl.config.base.ConfigPath` (or its weights-spec and tracking-URI variants), so
:func:`wearssl.config.load_config` and any ``model_validate`` refuse such a value with a
``ConfigError`` naming the dotted key, the value and the roots. The roots are read from the
environment of the process that validates, when it validates; a job that validates again
elsewhere (an ablation trial on a Ray worker, whose working directory is Tune's trial folder)
passes the driver's roots along instead of trusting the worker's working directory.
Operators declare roots in the environment, never in the config file itself, since the point
is to constrain what a config's author may reach.
"""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOTS_ENV = "WEARSSL_DATA_ROOTS"
STORAGE_ENV = "WEARSSL_STORAGE"

_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_URI_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")


def split_roots(text: str) -> list[str]:
    """Split an ``os.pathsep``-separated list of roots, keeping ``scheme://...`` URIs whole."""
    parts = text.split(os.pathsep)
    roots: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        joins_uri = (
            os.pathsep == ":"
            and _SCHEME.match(part)
            and i + 1 < len(parts)
            and parts[i + 1].startswith("//")
        )
        if joins_uri:
            part = f"{part}:{parts[i + 1]}"
            i += 1
        if part.strip():
            roots.append(part.strip())
        i += 1
    return roots


def default_roots(environ: Mapping[str, str] | None = None) -> list[str]:
    """The roots in force: cwd, temp directory, ``WEARSSL_STORAGE``, ``WEARSSL_DATA_ROOTS``."""
    env = os.environ if environ is None else environ
    roots = [str(Path.cwd()), tempfile.gettempdir()]
    if env.get(STORAGE_ENV, "").strip():
        roots.append(env[STORAGE_ENV].strip())
    roots.extend(split_roots(env.get(ROOTS_ENV, "")))
    return roots


def _normalised_uri(text: str) -> tuple[str, str] | None:
    """``("s3", "bucket/a/b")`` for a URI, ``..`` and ``.`` folded away; None for a local path."""
    match = _URI.match(text)
    if match is None or match["scheme"].lower() == "file":
        return None
    location = posixpath.normpath("/" + match["rest"]).lstrip("/")
    return match["scheme"].lower(), "" if location == "." else location


def _local_path(text: str) -> Path:
    """A local path or ``file://`` URI, resolved the way the job would open it."""
    if text.lower().startswith("file://"):
        text = unquote(urlsplit(text).path)
    return Path(text).expanduser().resolve()


def _uri_within(uri: tuple[str, str], root: tuple[str, str]) -> bool:
    scheme, location = uri
    root_scheme, root_location = root
    if scheme != root_scheme:
        return False
    if not root_location:
        return True
    return location == root_location or location.startswith(root_location + "/")


def within_roots(value: str, roots: Iterable[str]) -> bool:
    """Whether ``value`` (a local path or a URI) lies at or under one of ``roots``."""
    uri = _normalised_uri(value)
    if uri is not None:
        root_uris = (_normalised_uri(root) for root in roots)
        return any(root is not None and _uri_within(uri, root) for root in root_uris)
    path = _local_path(value)
    for root in roots:
        if _normalised_uri(root) is None and path.is_relative_to(_local_path(root)):
            return True
    return False


def outside_roots(value: str, roots: list[str]) -> str | None:
    """Why ``value`` may not be used (not a path, or outside every root); None when it may."""
    if not isinstance(value, str) or not value.strip():
        return f"{value!r} is not a path"
    try:
        inside = within_roots(value, roots)
    except (OSError, RuntimeError, ValueError) as err:  # RuntimeError: symlink loop
        return f"{value!r} is not a usable path ({err})"
    if not inside:
        return (
            f"{value!r} is outside the allowed data and storage roots "
            f"({', '.join(roots)}); add its root to {ROOTS_ENV} to allow it"
        )
    return None


def check_within_roots(key: str, value: str, roots: list[str]) -> None:
    """Raise ``ValueError`` naming ``key`` and ``value`` unless ``value`` lies under a root."""
    problem = outside_roots(value, roots)
    if problem is not None:
        raise ValueError(f"config key '{key}': {problem}")


# MLflow references name a run or a registered model, not a place to read or write.
MLFLOW_REFERENCES = ("models:/", "runs:/")
# Tracking URIs whose store is a local file; any other scheme names a server.
_LOCAL_TRACKING_SCHEMES = ("", "file", "sqlite")


def weights_outside_roots(spec: str, roots: list[str]) -> str | None:
    """:func:`outside_roots` for a weights spec: MLflow references pass, files are checked."""
    if isinstance(spec, str) and spec.strip().startswith(MLFLOW_REFERENCES):
        return None
    return outside_roots(spec.strip() if isinstance(spec, str) else spec, roots)


def tracking_store_path(uri: str) -> str | None:
    """The local file or folder an MLflow tracking URI stores runs in; None for a server.

    ``mlruns`` and ``file:///x/mlruns`` name a folder, ``sqlite:///rel.db`` and
    ``sqlite:////abs/x.db`` a database file (SQLAlchemy's three or four slashes);
    ``http(s)://``, ``databricks`` and database servers are not local places.
    """
    match = _URI_SCHEME.match(uri)
    scheme = match["scheme"].lower() if match else ""
    if scheme not in _LOCAL_TRACKING_SCHEMES:
        return None
    if scheme == "sqlite":
        body = uri[len("sqlite:") :]
        path = body[3:] if body.startswith("///") else body
        return None if path in ("", "//", ":memory:") else path
    if scheme == "file":
        return unquote(urlsplit(uri).path) or "."
    return uri


def tracking_outside_roots(uri: str, roots: list[str]) -> str | None:
    """:func:`outside_roots` for a tracking URI's local store (servers pass)."""
    if not isinstance(uri, str):
        return f"{uri!r} is not a tracking URI"
    if not uri.strip():
        return None  # empty: MLFLOW_TRACKING_URI or the default store, as for None
    try:
        path = tracking_store_path(uri.strip())
    except ValueError as err:
        return f"{uri!r} is not a usable tracking URI ({err})"
    if path is None:
        return None
    problem = outside_roots(path, roots)
    return None if problem is None else f"tracking store of {uri!r}: {problem}"
