"""How many ablation trials run at once, and what each holds.

The trial process itself holds almost nothing (``resources.trial_cpus``), so the CPUs go
to the pre-training workers, the Ray Data read tasks and the evaluation tasks, which
reserve their own. At most as many trials run at once as leave ``runtime.data_cpus`` free
for reading.
"""

from __future__ import annotations

from ray import tune

from wearssl.config.ablate import AblateConfig
from wearssl.config.pretrain import PretrainConfig
from wearssl.infra import ray_runtime as runtime


def plan_concurrency(
    cfg: AblateConfig, pretrain: PretrainConfig | None, cluster: dict[str, float]
) -> int:
    """Trials run at once. A pre-training trial holds ``runtime.num_workers x
    runtime.cpus_per_worker`` CPUs plus ``resources.trial_cpus``; ``runtime.data_cpus``
    stay free for every trial's Ray Data reads (training workers that hold every CPU
    starve the reads and hang). Evaluation tasks borrow the CPUs of finished workers."""
    cpus = float(cluster.get("CPU", 0.0))
    resources = cfg.resources
    if resources.eval_cpus > cpus + 1e-9:
        raise runtime.ResourcePlanError(
            f"resources.eval_cpus={resources.eval_cpus:g} but the cluster has {cpus:g} CPUs"
        )
    wanted = cfg.budget.max_concurrent_trials
    if pretrain is None:
        return wanted or max(1, int(cpus // max(resources.eval_cpus, resources.trial_cpus)))
    rt = pretrain.runtime
    plan = runtime.plan_resources(
        rt.num_workers, rt.cpus_per_worker, rt.data_cpus, rt.use_gpu, cluster, "pretrain runtime."
    )
    if pretrain.sampling.read_cpus > rt.data_cpus + 1e-9:
        raise runtime.ResourcePlanError(
            f"pretrain sampling.read_cpus={pretrain.sampling.read_cpus:g} exceeds "
            f"runtime.data_cpus={rt.data_cpus:g}: no read task could ever start"
        )
    per_trial = plan.training_cpus + resources.trial_cpus
    fits = int((cpus - rt.data_cpus + 1e-9) // per_trial)
    if rt.use_gpu:
        fits = min(fits, int(float(cluster.get("GPU", 0.0)) // rt.num_workers))
    if wanted is not None and wanted > fits:
        raise runtime.ResourcePlanError(
            f"budget.max_concurrent_trials={wanted}: {wanted} trials x ({plan.training_cpus:g} "
            f"training + {resources.trial_cpus:g} trial CPUs) + runtime.data_cpus="
            f"{rt.data_cpus:g} exceed the cluster's {cpus:g} CPUs; at most {fits} fit"
        )
    return wanted or max(1, fits)


def trial_resources(cfg: AblateConfig) -> tune.PlacementGroupFactory:
    return tune.PlacementGroupFactory([{"CPU": cfg.resources.trial_cpus}])
