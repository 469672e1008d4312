"""A Ray Tune experiment that a re-run of the same command resumes rather than starts again,
and what it prints: one line per finished trial with the experiment's progress and ETA
(:class:`TrialLines`) instead of Tune's status tables."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

from ray import tune
from ray.tune.experiment import Trial

from wearssl.infra.console import format_duration, progress_text

# What a restored experiment does with its errored trials: resume each from its latest
# checkpoint, or restart it from scratch.
ErroredTrials = Literal["resume", "restart"]
# Tune's own console output: 0 prints no status tables, trial results or tips.
SILENT = 0
# Tune's newer output engine prints the experiment's configuration table and its path at
# any verbosity; its legacy one, chosen by this variable, prints nothing at SILENT.
OUTPUT_ENGINE_VARIABLE = "RAY_AIR_NEW_OUTPUT"


def experiment_path(storage: str, name: str) -> str:
    """Folder (local path or URI) of Tune experiment ``name`` under ``storage``."""
    return f"{storage.rstrip('/')}/{name}"


class TrialLines(tune.Callback):
    """One line per trial that ends: its name, what it scored (``describe`` of its last
    result) and its wall time, then the experiment's progress and ETA
    (:func:`~wearssl.infra.console.progress_text`, unit "trials").

    Written by the driver (Tune's callbacks run there). The counts start again at each
    run of the experiment (:meth:`setup`), so a resumed experiment's ETA counts only the
    trials left, from the rate of this run.
    """

    def __init__(
        self,
        label: str,
        describe: Callable[[dict[str, Any]], str],
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.describe = describe
        self.stream = stream
        self.clock = clock
        self._started = clock()
        self._total = 0
        self._ended_before = 0
        self._ended = 0
        self._trial_started: dict[str, float] = {}

    def setup(self, total_num_samples: int | None = None, **info: Any) -> None:
        self._started = self.clock()
        self._total = total_num_samples or 0
        self._ended_before = 0
        self._ended = 0
        self._trial_started = {}

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._trial_started[trial.trial_id] = self.clock()

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info):
        self._write(trials, trial, self.describe(trial.last_result or {}))

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info):
        self._write(trials, trial, "FAILED (its error is listed when the experiment ends)")

    def _write(self, trials: list[Trial], trial: Trial, outcome: str) -> None:
        if self._ended == 0:  # trials a resumed experiment had finished before this run
            self._ended_before = sum(
                t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials if t is not trial
            )
        self._ended += 1
        now = self.clock()
        took = now - self._trial_started.get(trial.trial_id, now)
        total = max(self._total, len(trials)) - self._ended_before
        progress = progress_text(self.label, self._ended, total, now - self._started, "trials")
        before = f" (+{self._ended_before} finished before)" if self._ended_before else ""
        stream = self.stream or sys.stderr
        stream.write(f"{trial}: {outcome} in {format_duration(took)}  {progress}{before}\n")
        stream.flush()


def fit_silently(tuner: tune.Tuner) -> tune.ResultGrid:
    """``tuner.fit()`` with Tune's legacy output engine, so a run at verbosity
    :data:`SILENT` prints nothing of Tune's own; the variable is restored afterwards."""
    saved = os.environ.get(OUTPUT_ENGINE_VARIABLE)
    os.environ[OUTPUT_ENGINE_VARIABLE] = "0"
    try:
        return tuner.fit()
    finally:
        if saved is None:
            os.environ.pop(OUTPUT_ENGINE_VARIABLE, None)
        else:
            os.environ[OUTPUT_ENGINE_VARIABLE] = saved


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
    with, its callbacks included): finished trials are kept, unfinished ones continue and
    errored ones are handled per ``errored``. Otherwise a new experiment is created.
    ``what`` names it in the message that says it resumes.
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
