"""Validated job configurations: one pydantic schema per job, YAML plus ``key=value`` overrides."""

from wearssl.config.base import ConfigError, StrictModel, flatten, load_config

__all__ = ["ConfigError", "StrictModel", "flatten", "load_config"]
