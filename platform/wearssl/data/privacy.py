"""Pseudonymisation of subject ids.

Raw subject ids (file names, study ids) never leave ingestion: the corpus, MLflow,
logs and reports only see a keyed hash. The key is read from the environment
(``WEARSSL_PSEUDONYM_KEY``), from a file named by ``WEARSSL_PSEUDONYM_KEY_FILE``,
or from ``~/.config/wearssl/pseudonym.key`` (created with random bytes on first use).
It never lives in the repository.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path

KEY_ENV = "WEARSSL_PSEUDONYM_KEY"
KEY_FILE_ENV = "WEARSSL_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = Path.home() / ".config" / "wearssl" / "pseudonym.key"
PSEUDONYM_PREFIX = "p"

log = logging.getLogger(__name__)


def _key_file() -> Path:
    return Path(os.environ.get(KEY_FILE_ENV, DEFAULT_KEY_FILE)).expanduser()


@lru_cache(maxsize=4)
def _load_key(env_key: str | None, key_file: Path) -> bytes:
    if env_key:
        return env_key.encode()
    if key_file.exists():
        key = key_file.read_bytes().strip()
        if not key:
            raise ValueError(f"pseudonymisation key file {key_file} is empty")
        return key
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    log.warning(
        "created the pseudonymisation key %s (random, readable by you only): it keys the "
        "subject pseudonyms of corpora, MLflow runs and reports. Keep it private, and keep "
        "it to get the same pseudonyms again; %s or %s name another key",
        key_file,
        KEY_ENV,
        KEY_FILE_ENV,
    )
    return key


def pseudonymisation_key() -> bytes:
    """The secret key used for subject pseudonyms (see module docstring for where it comes from)."""
    return _load_key(os.environ.get(KEY_ENV), _key_file())


def pseudonymise(raw_id: str) -> str:
    """A stable keyed pseudonym for a raw subject id: ``p`` + 16 hex characters.

    Ids that are already pseudonyms are returned unchanged, so re-ingesting a
    pseudonymised dataset is idempotent.
    """
    if is_pseudonym(raw_id):
        return raw_id
    digest = hmac.new(pseudonymisation_key(), raw_id.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:16]


def is_pseudonym(value: str) -> bool:
    body = value[len(PSEUDONYM_PREFIX) :]
    return (
        value.startswith(PSEUDONYM_PREFIX)
        and len(body) == 16
        and all(c in "0123456789abcdef" for c in body)
    )
