"""How the project's experiments and runs read in MLflow: the view, descriptions, source tags."""

from __future__ import annotations

from datetime import datetime

import pytest
from mlflow.tracking import MlflowClient

from wearssl.infra import tracking
from wearssl.infra.git import UNKNOWN_COMMIT
from wearssl.infra.mlflow_runs import job_tags

JOB_KINDS = ["pretrain", "evaluate", "ablate", "explain"]


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_a_new_experiment_opens_in_the_model_training_view_with_its_description(
    kind: str, sqlite_tracking: str
) -> None:
    experiment = tracking.experiment_id(kind, sqlite_tracking)
    tags = MlflowClient(sqlite_tracking).get_experiment(experiment).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"] == tracking.EXPERIMENT_DESCRIPTIONS[kind]


def test_each_job_kind_describes_its_experiment_differently() -> None:
    descriptions = [tracking.experiment_description(kind) for kind in JOB_KINDS]
    assert len(set(descriptions)) == len(JOB_KINDS)
    assert "bench-kind" in tracking.experiment_description("bench-kind")


def test_an_experiment_made_before_gets_the_tags_it_lacks_and_keeps_its_own(
    sqlite_tracking: str,
) -> None:
    client = MlflowClient(sqlite_tracking)
    experiment = client.create_experiment(
        "wearssl-evaluate", tags={"mlflow.note.content": "written in the UI"}
    )
    assert tracking.experiment_id("evaluate", sqlite_tracking) == experiment
    tags = client.get_experiment(experiment).tags
    assert tags["mlflow.note.content"] == "written in the UI"
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_job_tags_name_the_job_its_kind_and_commit_on_a_run_read_back(
    sqlite_tracking: str,
) -> None:
    tags = job_tags({"CPU": 2.0}, "evaluate")
    client = MlflowClient(sqlite_tracking)
    experiment = tracking.experiment_id("evaluate", sqlite_tracking)
    run = client.get_run(client.create_run(experiment, tags=tags).info.run_id)
    held = run.data.tags
    assert held["mlflow.source.name"] == "wearssl evaluate"
    assert held["mlflow.source.type"] == "JOB"
    assert held["git_commit"] == tracking.git_commit()
    assert held["cluster_cpus"] == "2" and held["cluster_gpus"] == "0"
    if held["git_commit"] != UNKNOWN_COMMIT:
        assert held["mlflow.source.git.commit"] == held["git_commit"]


def test_job_tags_name_the_job_the_front_door_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracking.JOB_ENV, "ablate")
    assert job_tags({})["mlflow.source.name"] == "wearssl ablate"


def test_job_tags_leave_out_a_commit_they_do_not_know(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking, "git_commit", lambda: UNKNOWN_COMMIT)
    tags = job_tags({}, "pretrain")
    assert tags["git_commit"] == UNKNOWN_COMMIT
    assert "mlflow.source.git.commit" not in tags


def test_timestamps_are_iso_utc_to_the_second() -> None:
    stamp = datetime.fromisoformat(tracking.utc_timestamp())
    assert stamp.utcoffset().total_seconds() == 0 and stamp.microsecond == 0
