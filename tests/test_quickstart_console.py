"""What a person sees on the console: the quickstart's own lines, not Ray's or MLflow's.

The quickstart runs as ``make quickstart`` runs it (a real subprocess, a real local Ray,
a real MLflow store), in a temporary folder and for two epochs. Ray's and MLflow's own
logs return with ``--verbose``; the project's warnings and errors, in the driver or in a
Ray worker, always reach the console.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from wearssl.cli import build_parser
from wearssl.data import privacy
from wearssl.infra import ray_runtime

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 2
# Measured: 22 lines for three epochs (99 before Ray's chatter was hidden), 11 of them
# the synthetic corpus being written; each further epoch adds its one line.
LINE_BUDGET = 25 + 2 * EPOCHS
BOX_DRAWING = re.compile("[\u2500-\u257f]")
# A Python warning raised in the project's code: "<path>/wearssl/<module>.py:<line>: XWarning:"
OWN_WARNING = re.compile(r"wearssl/\S+\.py:\d+: \w*Warning")
RAY_CHATTER = ("Traceback", "PlacementGroupCleaner", "TrainingReport(", "TrainController")
CONFIG_JOBS = ["pretrain", "evaluate", "ablate", "explain"]
PROJECT_LOGGER = "wearssl.pretrain.train"
CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
# A Ray task that logs as Ray's internals do and as the project's own code does.
WORKER_LOGS = f"""
import logging, time
import ray
from wearssl.infra import ray_runtime

@ray.remote
def work():
    logging.getLogger("{CLEANER_LOGGER}").warning("cleaner chatter")
    logging.getLogger("ray.data").info("data chatter")
    logging.getLogger("{PROJECT_LOGGER}").warning("own warning")
    logging.getLogger("{PROJECT_LOGGER}").error("own error")
    print("own print", flush=True)

ray_runtime.connect(num_cpus=1)
ray.get(work.remote())
time.sleep(2)  # forwarded worker logs reach the driver asynchronously
"""


def job_environment(**extra: str) -> dict[str, str]:
    """The environment ``make quickstart`` gives a job: no cluster, no tracking server, the
    package from this checkout, and no console choice inherited from this test process."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"RAY_ADDRESS", "MLFLOW_TRACKING_URI", ray_runtime.VERBOSE_ENV}
    }
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO / "platform"), env.get("PYTHONPATH")])
    )
    env["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    return {**env, **extra}


@pytest.fixture
def logger_levels():
    """Restore the levels :func:`ray_runtime.quiet_process` changes in this process."""
    names = [*ray_runtime.QUIET_LOGGERS, PROJECT_LOGGER]
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("job", CONFIG_JOBS)
def test_every_config_job_takes_verbose(job: str) -> None:
    parser = build_parser()
    assert parser.parse_args([job, "--verbose"]).verbose is True
    assert parser.parse_args([job]).verbose is False


def test_quiet_hides_ray_and_mlflow_below_warning_but_not_the_projects_own(
    logger_levels, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ray_runtime.QUIET_LIBRARY_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv(ray_runtime.VERBOSE_ENV, raising=False)
    ray_runtime.set_console(verbose=False)
    assert not ray_runtime.verbose_requested()
    assert not logging.getLogger("ray.train.v2._internal.session").isEnabledFor(logging.INFO)
    assert logging.getLogger("ray.tune").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("mlflow.store.db.utils").isEnabledFor(logging.INFO)
    assert not logging.getLogger(CLEANER_LOGGER).isEnabledFor(logging.WARNING)
    assert logging.getLogger(PROJECT_LOGGER).isEnabledFor(logging.WARNING)
    assert os.environ["RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING"] == "0"


def test_verbose_changes_nothing(logger_levels, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ray_runtime.QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    monkeypatch.delenv("RAY_DATA_LOG_LEVEL", raising=False)
    monkeypatch.delenv(ray_runtime.VERBOSE_ENV, raising=False)
    ray_runtime.set_console(verbose=True)
    assert ray_runtime.verbose_requested()
    assert logging.getLogger(CLEANER_LOGGER).level == logging.NOTSET
    assert "RAY_DATA_LOG_LEVEL" not in os.environ


def test_a_new_pseudonymisation_key_is_announced_once_with_its_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "config" / "pseudonym.key"
    with caplog.at_level(logging.WARNING, logger=privacy.__name__):
        key = privacy._load_key(None, key_file)
        privacy._load_key.cache_clear()
        assert privacy._load_key(None, key_file) == key
    notices = [record.getMessage() for record in caplog.records]
    assert len(notices) == 1
    assert str(key_file) in notices[0] and "pseudonyms" in notices[0]


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_ray_workers_keep_the_projects_warnings_and_errors_and_only_verbose_shows_rays(
    verbose: bool, tmp_path: Path
) -> None:
    env = job_environment(**{ray_runtime.VERBOSE_ENV: "1" if verbose else "0"})
    done = subprocess.run(
        [sys.executable, "-c", WORKER_LOGS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    for own in ("own warning", "own error", "own print"):
        assert own in console
    assert ("cleaner chatter" in console) is verbose
    assert ("Started a local Ray instance" in console) is verbose


@pytest.mark.slow
def test_the_quickstart_prints_its_own_lines_within_a_budget(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "pretrain.py"), f"optim.epochs={EPOCHS}"],
        cwd=tmp_path,
        env=job_environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    lines = console.splitlines()
    for chatter in RAY_CHATTER:
        assert chatter not in console, chatter
    assert not BOX_DRAWING.search(console)
    assert not [line for line in lines if OWN_WARNING.search(line)]
    assert "pre-training finished" in console
    assert len(lines) <= LINE_BUDGET, console


def test_a_worker_names_its_own_cluster_among_several_on_one_machine(
    ray_local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray Train's placement-group cleaner finds its cluster by ``RAY_ADDRESS``; a worker
    that names its own never meets "Found multiple active Ray instances"."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_runtime.pin_cluster_address()
    assert os.environ["RAY_ADDRESS"] == ray.get_runtime_context().gcs_address
