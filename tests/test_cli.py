"""The ``wearssl`` front door: every job behind ``wearssl <job>``, quick help, the printed
config, the nearest key for a typo, and the ``jobs/*.py`` shims that ``ray job submit`` runs."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from wearssl.cli import EXIT_USAGE, main
from wearssl.commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]
JOBS = [
    "pretrain",
    "evaluate",
    "ablate",
    "explain",
    "ingest",
    "datasets",
    "predict",
    "collate",
    "synth",
]
CONFIG_JOBS = ["pretrain", "evaluate", "ablate", "explain"]
HEAVY_MODULES = ("ray", "torch", "mlflow", "pandas")


def python(*args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in the repository, with this tree's package first on the path."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "platform")}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_every_job_is_a_command() -> None:
    assert sorted(command.name for command in COMMANDS) == sorted(JOBS)


@pytest.mark.parametrize("job", JOBS)
def test_every_job_has_help_with_its_exit_codes(job: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([job, "--help"])
    assert exit_.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # as one line, however it wraps
    assert shown.startswith(f"usage: wearssl {job}")
    assert "exit status: 0" in shown and "1 unexpected failure" in shown


def test_version_is_the_package_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"wearssl {metadata.version('wearssl')}"


@pytest.mark.parametrize("argv", [["--help"], ["pretrain", "--help"]])
def test_help_imports_no_heavy_module(argv: list[str]) -> None:
    shown = ", ".join(HEAVY_MODULES)
    probe = (
        "import sys\n"
        "from wearssl.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('imported:', [m for m in {HEAVY_MODULES!r} if m in sys.modules])\n"
    )
    run = python("-c", probe)
    assert run.returncode == 0, run.stderr
    assert "imported: []" in run.stdout, f"--help imported some of {shown}: {run.stdout[-300:]}"


@pytest.mark.parametrize("job", CONFIG_JOBS)
def test_print_config_shows_every_key_with_its_default(job: str, capsys) -> None:
    assert main([job, "--print-config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert isinstance(config, dict) and config["name"]
    if job == "pretrain":
        assert config["optim"]["lr_reference_batch"] == 512  # a default the file leaves out


def test_print_config_applies_the_overrides(capsys) -> None:
    assert main(["pretrain", "--print-config", "optim.epochs=7"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["epochs"] == 7


def test_an_unknown_key_names_the_nearest_valid_one(capsys) -> None:
    assert main(["pretrain", "--print-config", "optim.epoch=3"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "unknown key 'optim.epoch' (did you mean 'optim.epochs'?)" in err


def test_a_key_like_no_other_gets_no_suggestion(capsys) -> None:
    assert main(["pretrain", "--print-config", "zzzzzz=1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown key 'zzzzzz'" in err and "did you mean" not in err


@pytest.mark.parametrize("job", [*CONFIG_JOBS, "ingest", "datasets", "predict", "synth"])
def test_the_job_shims_still_parse(job: str) -> None:
    run = python(f"jobs/{job}.py", "--help")
    assert run.returncode == 0, run.stderr
    assert "exit status: 0" in run.stdout


def test_the_pretrain_shim_runs_the_front_door() -> None:
    run = python("jobs/pretrain.py", "--print-config", "optim.epochs=5")
    assert run.returncode == 0, run.stderr
    assert yaml.safe_load(run.stdout)["optim"]["epochs"] == 5


def test_python_dash_m_wearssl_is_the_command() -> None:
    run = python("-m", "wearssl", "pretrain", "--print-config", "optim.epoch=1")
    assert run.returncode == EXIT_USAGE
    assert "did you mean 'optim.epochs'" in run.stderr
