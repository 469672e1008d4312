"""Ray runtime: connecting to (or starting) a cluster, and the CPU plan that keeps Ray Data alive.

Training workers that hold every CPU starve Ray Data's read tasks and the job hangs
forever. Every job therefore plans its resources before it starts: training workers get
``num_workers x cpus_per_worker`` CPUs, and ``data_cpus`` stay free for reading. A plan
that cannot fit on the cluster it sees is refused with a message naming the keys, and so
is a per-task CPU request that no node can hold or that the plan leaves no room for
(:func:`require_task_fits`): Ray would wait for it forever.
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


def connect(
    address: str | None = None, num_cpus: int | None = None, num_cpus_key: str = "--num-cpus"
) -> dict:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local Ray with
    ``num_cpus`` CPUs (named ``num_cpus_key`` in errors; fewer than 1 is refused).

    Returns the cluster's total resources. A no-op when Ray is already initialised.
    """
    if num_cpus is not None and num_cpus < 1:
        raise ResourcePlanError(
            f"{num_cpus_key}={num_cpus}: a local Ray needs at least 1 CPU to run any task"
        )
    if not ray.is_initialized():
        target = address or os.environ.get("RAY_ADDRESS")
        if target:
            ray.init(address=target, log_to_driver=True)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    return ray.cluster_resources()


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
