"""Ray runtime: connecting to (or starting) a cluster, and the CPU plan that keeps Ray Data alive.

Training workers that hold every CPU starve Ray Data's read tasks and the job hangs
forever. Every job therefore plans its resources before it starts: training workers get
``num_workers x cpus_per_worker`` CPUs, and ``data_cpus`` stay free for reading. A plan
that cannot fit on the cluster it sees is refused with a message naming the keys, and so
is a per-task CPU request that no node can hold or that the plan leaves no room for
(:func:`require_task_fits`): Ray would wait for it forever.

What a job prints is the job's own: Ray's and MLflow's internal logs below WARNING, Ray
Train's controller chatter and Ray Data's execution notes are hidden, in the driver and
in every Ray worker (:func:`quiet_process`, run by each worker as its setup hook), unless
the job runs with ``--verbose`` (:data:`VERBOSE_ENV`). Warnings and errors of the project's
own code, in the driver or a worker, always reach the console.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import ray

from wearssl.errors import ResourcePlanError as ResourcePlanError

log = logging.getLogger(__name__)

QUIET_ENV = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
# "1": the job shows Ray's and MLflow's own logs (``--verbose``); read by every process.
VERBOSE_ENV = "WEARSSL_VERBOSE"
# Read by Ray Data, Ray Train, Ray Tune and MLflow where they start work in a process.
# Train's structured logging re-routes every ``print`` of a training worker into its
# logger, so the console shows it twice, and prints its controller's progress (resource
# requests, each TrainingReport) at INFO; without it, ``ray.train`` logs through the
# ``ray`` logger and its level. Tune warns when it saves its state more often than every
# 5 s, which short trials always do; MLflow draws a progress bar per artifact download.
QUIET_LIBRARY_ENV = {
    "RAY_DATA_LOG_LEVEL": "WARNING",
    "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
QUIET_LOGGERS = {
    "ray": logging.WARNING,
    "ray.data": logging.WARNING,
    # Warns that progress bars are off, which the quiet job asked for (:data:`QUIET_ENV`).
    "ray.data._internal.progress": logging.ERROR,
    # Polls the controller through the State API, which a Ray without its dashboard
    # lacks: a warning every few seconds for as long as training runs.
    "ray.train.v2._internal.execution.controller.placement_group_cleaner": logging.ERROR,
    # Asks the autoscaler for the training's resources; under a CPU load its call times out
    # and it warns with a traceback that it is "safe to ignore" (the run goes on).
    "ray.train.v2._internal.execution.scaling_policy.autoscaling_coordinator_client": (
        logging.ERROR
    ),
    # Announces at every local start that Ray's default (token authentication) is on.
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
    "mlflow": logging.WARNING,
    # The project saves its networks with pickle on purpose (trusted files, any torch
    # version); MLflow's advice against it would print at every model logged.
    "mlflow.pytorch": logging.ERROR,
}
# Set where a job starts a local Ray, unless the environment says otherwise: one machine
# has no nodes to be preempted, and Train's preemption watcher logs a core error at start.
LOCAL_RAY_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


@dataclass(frozen=True)
class ResourcePlan:
    num_workers: int
    cpus_per_worker: float
    data_cpus: float
    use_gpu: bool

    @property
    def training_cpus(self) -> float:
        return self.num_workers * self.cpus_per_worker

    @property
    def torch_threads(self) -> int:
        """A worker's share of CPUs rounded up: 1.5 CPUs get 2 threads (Ray's fractional
        CPUs are a scheduling share; the reads the rest reserves are short bursts)."""
        return max(1, math.ceil(self.cpus_per_worker))


def verbose_requested() -> bool:
    """Whether the job shows Ray's and MLflow's own logs (``--verbose``, :data:`VERBOSE_ENV`)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def quiet_process() -> None:
    """Hide Ray's and MLflow's own logs below WARNING (and the noisy ones of
    :data:`QUIET_LOGGERS` below ERROR) in this process; environment values a person set
    win. Every Ray worker of a quiet job runs it when it starts (its setup hook)."""
    for key, value in QUIET_LIBRARY_ENV.items():
        os.environ.setdefault(key, value)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def pin_cluster_address() -> None:
    """Name this process's own cluster in ``RAY_ADDRESS`` (unless it is set). Ray Train's
    placement-group cleaner looks its cluster up by address; with two Ray instances on one
    machine (two local jobs at once) it finds both, and its monitor thread dies with a
    traceback. Every Ray worker a job starts runs it (its setup hook)."""
    if ray.is_initialized():
        os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def quiet_worker() -> None:
    """The setup hook of a quiet job's Ray workers: :func:`pin_cluster_address`, then
    :func:`quiet_process`."""
    pin_cluster_address()
    quiet_process()


def set_console(verbose: bool) -> None:
    """The job's console, decided once by its front door: Ray's and MLflow's own logs shown
    (``verbose``), or hidden in this process now and in the Ray workers :func:`connect`
    starts (:func:`quiet_process`)."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if verbose:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    quiet_process()


def connect(
    address: str | None = None, num_cpus: int | None = None, num_cpus_key: str = "--num-cpus"
) -> dict:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local Ray with
    ``num_cpus`` CPUs (named ``num_cpus_key`` in errors; fewer than 1 is refused).

    Returns the cluster's total resources. A no-op when Ray is already initialised.
    Unless :func:`verbose_requested`, the driver and every worker are quiet
    (:func:`quiet_process`).
    """
    if num_cpus is not None and num_cpus < 1:
        raise ResourcePlanError(
            f"{num_cpus_key}={num_cpus}: a local Ray needs at least 1 CPU to run any task"
        )
    if not ray.is_initialized():
        _start_or_join(address or os.environ.get("RAY_ADDRESS"), num_cpus)
    return ray.cluster_resources()


def _start_or_join(target: str | None, num_cpus: int | None) -> None:
    """``ray.init`` for :func:`connect`: quiet workers unless :func:`verbose_requested`."""
    quiet = not verbose_requested()
    hook = quiet_worker if quiet else pin_cluster_address
    options: dict = {
        "log_to_driver": True,
        "runtime_env": {"worker_process_setup_hook": f"{__name__}.{hook.__name__}"},
    }
    if quiet:
        quiet_process()
        # ray.init sets the driver's ``ray`` logger to its own level (INFO by default)
        options["logging_level"] = QUIET_LOGGERS["ray"]
    if target in (None, "", "local"):
        for key, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(key, value)
    if target:
        ray.init(address=target, **options)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **options)


def plan_resources(
    num_workers: int,
    cpus_per_worker: float,
    data_cpus: float,
    use_gpu: bool,
    cluster: dict[str, float],
    key_prefix: str = "runtime.",
) -> ResourcePlan:
    """Check that training workers plus the data reserve fit the cluster; refuse clearly if not."""
    plan = ResourcePlan(num_workers, cpus_per_worker, data_cpus, use_gpu)
    total_cpus = float(cluster.get("CPU", 0.0))
    needed = plan.training_cpus + data_cpus
    if needed > total_cpus + 1e-9:
        raise ResourcePlanError(
            f"{key_prefix}num_workers={num_workers} x "
            f"{key_prefix}cpus_per_worker={cpus_per_worker} "
            f"+ {key_prefix}data_cpus={data_cpus} = {needed:g} CPUs, but the cluster has "
            f"{total_cpus:g}. Ray Data needs CPUs the training workers do not hold; use "
            f"fewer workers or fractional {key_prefix}cpus_per_worker (e.g. "
            f"{max(total_cpus - data_cpus, 0) / num_workers:g})."
        )
    if use_gpu and float(cluster.get("GPU", 0.0)) < num_workers:
        raise ResourcePlanError(
            f"{key_prefix}use_gpu with {key_prefix}num_workers={num_workers} needs "
            f"{num_workers} GPUs, the cluster has {cluster.get('GPU', 0):g}"
        )
    return plan


def largest_node_cpus() -> float:
    """CPUs of the biggest alive node of the connected cluster (one task runs on one node)."""
    return max(
        (float(node["Resources"].get("CPU", 0.0)) for node in ray.nodes() if node["Alive"]),
        default=0.0,
    )


def require_task_fits(
    key: str, cpus: float, cluster: dict[str, float], held_by_plan: float = 0.0
) -> None:
    """Refuse a per-task request of ``cpus`` CPUs (config key ``key``) that no node can
    hold, or that does not fit beside the ``held_by_plan`` CPUs training workers hold:
    Ray would queue such a task forever."""
    node_cpus = largest_node_cpus()
    free = float(cluster.get("CPU", 0.0)) - held_by_plan
    if cpus > node_cpus + 1e-9:
        raise ResourcePlanError(
            f"{key}={cpus:g} CPUs per task, but the largest node of the cluster has "
            f"{node_cpus:g}: no node could ever run it"
        )
    if cpus > free + 1e-9:
        raise ResourcePlanError(
            f"{key}={cpus:g} CPUs per task, but only {free:g} of the cluster's "
            f"{cluster.get('CPU', 0):g} CPUs are left beside the training workers' "
            f"{held_by_plan:g}: the task could never start"
        )
