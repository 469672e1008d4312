"""A Ray Tune experiment that a re-run of the same command resumes rather than starts again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ray import tune

# What a restored experiment does with its errored trials: resume each from its latest
# checkpoint, or restart it from scratch.
ErroredTrials = Literal["resume", "restart"]


def experiment_path(storage: str, name: str) -> str:
    """Folder (local path or URI) of Tune experiment ``name`` under ``storage``."""
    return f"{storage.rstrip('/')}/{name}"


def restore_or_create(
    trainable: Callable[..., Any] | type[tune.Trainable],
    param_space: dict[str, Any],
    tune_config: tune.TuneConfig,
    run_config: tune.RunConfig,
    errored: ErroredTrials,
    what: str,
) -> tune.Tuner:
    """The Tuner of experiment ``run_config.name`` under ``run_config.storage_path``.

    Where an earlier run left that experiment, it is restored (with the configs it was saved
    with): finished trials are kept, unfinished ones continue and errored ones are handled
    per ``errored``. Otherwise a new experiment is created. ``what`` names it in the
    message that says it resumes.
    """
    path = experiment_path(str(run_config.storage_path), str(run_config.name))
    if tune.Tuner.can_restore(path):
        print(f"resuming {what} {path}", flush=True)
        return tune.Tuner.restore(
            path,
            trainable,
            resume_errored=errored == "resume",
            restart_errored=errored == "restart",
        )
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    )
