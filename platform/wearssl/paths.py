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


def check_within_roots(key: str, value: str, roots: list[str]) -> None:
    """Raise ``ValueError`` naming ``key`` and ``value`` unless ``value`` lies under a root."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"config key '{key}': {value!r} is not a path")
    try:
        inside = within_roots(value, roots)
    except (OSError, RuntimeError, ValueError) as err:  # RuntimeError: symlink loop
        raise ValueError(f"config key '{key}': {value!r} is not a usable path ({err})") from None
    if not inside:
        raise ValueError(
            f"config key '{key}': {value!r} is outside the allowed data and storage roots "
            f"({', '.join(roots)}); add its root to {ROOTS_ENV} to allow it"
        )
