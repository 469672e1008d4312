"""Running a job's trials as one Ray Tune experiment that a re-run resumes.

The evaluation and the ablations both plan their trials as frozen specs, name the
experiment after a digest of what decides the results (:func:`experiment_name`), and run
the specs as a grid of a function trainable (:func:`run_trials`). A trial that failed for
good makes the run raise :class:`TrialsFailed`; the finished ones are kept for the re-run.
Tune prints nothing of its own; each trial that ends is one line (:class:`TrialLines`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ray import tune

from wearssl.downstream.datasets import value_digest
from wearssl.infra.tune import (
    SILENT,
    ErroredTrials,
    TrialLines,
    experiment_path,
    fit_silently,
    restore_or_create,
)

TRIAL_PARAM = "trial"  # the key of a trial's spec in its Tune config


class TrialsFailed(RuntimeError):
    """Some trials failed (after their retries); the finished ones are kept and a re-run of
    the same command resumes the rest."""


def experiment_name(name: str, decisive: Any) -> str:
    """``name`` plus a digest of ``decisive``: everything that decides the trials' results."""
    return f"{name}-{value_digest(decisive)[:10]}"


@dataclass(frozen=True)
class TuneSettings:
    """How a job's experiment runs: its name and storage, how many trials at once, each
    trial's resources (fixed, or a function of its spec), retries, what a resumed run
    does with trials that had errored, and how a finished trial's line tells its score
    (``describe``, from the metrics it reported)."""

    name: str
    storage: str
    max_concurrent: int
    resources: tune.PlacementGroupFactory | Callable[[Any], tune.PlacementGroupFactory]
    folder: Callable[[Any], str]  # a trial's folder in the storage, from its spec
    errored: ErroredTrials
    what: str  # how messages name the experiment
    describe: Callable[[dict[str, Any]], str]
    max_failures: int = 0
    reuse_actors: bool = False


def run_spec(
    config: dict[str, Any], specs: dict[str, Any], body: Callable, parameters: dict[str, Any]
) -> None:
    """The function trainable of every experiment: the trial's spec, found by the key in its
    Tune config, and the job's ``parameters`` go to ``body``."""
    body(specs[config[TRIAL_PARAM]], **parameters)


def run_trials(
    body: Callable, specs: Sequence[Any], settings: TuneSettings, **parameters: Any
) -> tune.ResultGrid:
    """Run the specs as experiment ``settings.name``, or resume it where it exists.

    Each trial calls ``body(spec, **parameters)``. The specs travel with the trainable
    (Tune's config holds only each spec's ``key``, a plain value Tune can show and store).
    Raises :class:`TrialsFailed` naming each failed trial by its key.
    """
    by_key = {spec.key: spec for spec in specs}

    def folder(trial: Any) -> str:
        return settings.folder(by_key[trial.config[TRIAL_PARAM]])

    resources = settings.resources
    if not isinstance(resources, tune.PlacementGroupFactory):  # a function of the spec
        per_spec = resources

        def resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
            return per_spec(by_key[config[TRIAL_PARAM]])

    trainable = tune.with_parameters(run_spec, specs=by_key, body=body, parameters=parameters)
    tuner = restore_or_create(
        tune.with_resources(trainable, resources),
        param_space={TRIAL_PARAM: tune.grid_search(list(by_key))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=settings.max_concurrent,
            reuse_actors=settings.reuse_actors,
            trial_name_creator=folder,
            trial_dirname_creator=folder,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=settings.storage,
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            # No CheckpointConfig(num_to_keep): a trial saves one checkpoint at most, and
            # num_to_keep forces a snapshot of the experiment per checkpoint (Tune warns).
            verbose=SILENT,
            callbacks=[TrialLines(settings.what, settings.describe)],
        ),
        errored=settings.errored,
        what=settings.what,
    )
    grid = fit_silently(tuner)
    by_folder = {settings.folder(spec): spec for spec in specs}
    failed = [failure_line(result, by_folder) for result in grid if result.error is not None]
    if failed:
        raise TrialsFailed(
            f"{len(failed)} of {len(grid)} trials failed ({'; '.join(failed)}); finished trials "
            f"are kept in {experiment_path(settings.storage, settings.name)}: run the same "
            "command again to resume the rest"
        )
    return grid


def result_spec(result: tune.Result, by_folder: dict[str, Any]) -> Any | None:
    """The spec of a result's trial, found by its folder, since the result of a trial whose
    actor failed before its first report has no config; else by its config."""
    spec = by_folder.get(PurePosixPath(result.path).name)
    if spec is not None:
        return spec
    key = (result.config or {}).get(TRIAL_PARAM)
    return next((spec for spec in by_folder.values() if spec.key == key), None)


def failure_line(result: tune.Result, by_folder: dict[str, Any]) -> str:
    """``trial key: last line of its error`` (the folder when the trial is unknown);
    ``by_folder`` maps a trial's folder to its spec."""
    spec = result_spec(result, by_folder)
    lines = str(result.error).strip().splitlines()
    name = spec.key if spec is not None else (result.config or {}).get(TRIAL_PARAM, result.path)
    return f"{name}: {lines[-1] if lines else type(result.error).__name__}"
