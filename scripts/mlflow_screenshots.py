"""Screenshots of the MLflow UI on a tracking store, to check how the project's runs read.

    python scripts/mlflow_screenshots.py [--store URI] [--out DIR] [--browser PATH]

``--store`` is a tracking URI: a local store (default ``sqlite:///mlruns/mlflow.db``, what
``make quickstart`` writes), for which an ``mlflow server`` is started on a free loopback
port and stopped at the end, or the ``http(s)://`` address of a running server. A headless
Chromium (Debian's ``chromium`` package; Playwright drives it, ``pip install playwright``,
no browser download needed) then saves PNGs in ``--out`` (default ``mlflow-screenshots``):

- ``experiments.png``: the experiment list;
- ``pretrain-runs.png``, ``pretrain-run.png``, ``pretrain-run-metrics.png``: the
  pre-training experiment, its newest run's overview and its metric charts;
- ``evaluate-runs.png``, ``evaluate-parent.png``, ``evaluate-child.png``: the evaluation
  experiment with its parent runs expanded, the newest parent's overview and one child's;
- ``explain-run.png``, ``explain-run-metrics.png``: the newest explanation and its charts;
- ``models.png``, ``model.png``: the registered models and the first one's versions.

A page whose run or model is missing from the store is skipped with a note.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

DEFAULT_STORE = "sqlite:///mlruns/mlflow.db"
DEFAULT_BROWSER = "/usr/bin/chromium"
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LOOPBACK = "127.0.0.1"
SERVER_START_S = 120.0
# The UI keeps polling, so a page is never idle: wait for its load, then for the data and
# the charts that draw after it.
PAGE_SETTLE_MS = 5000
# The UI scrolls inside its own panels, so a page shows what fits this window.
VIEWPORT = {"width": 1600, "height": 1500}
PRETRAIN_EXPERIMENT = "wearssl-pretrain"
EVALUATE_EXPERIMENT = "wearssl-evaluate"
EXPLAIN_EXPERIMENT = "wearssl-explain"
PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class Page:
    """One screenshot: the UI route after ``#`` and the PNG's name."""

    name: str
    route: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def ui_server(store: str, log: Path) -> Iterator[str]:
    """The address of an MLflow UI on ``store``: the store itself when it is a server,
    else an ``mlflow server`` started on it for the duration of the block."""
    if store.startswith(("http://", "https://")):
        yield store.rstrip("/")
        return
    port = free_port()
    address = f"http://{LOOPBACK}:{port}"
    command = [
        *[sys.executable, "-m", "mlflow", "server"],
        *["--backend-store-uri", store, "--host", LOOPBACK, "--port", str(port)],
        *["--workers", "1"],
    ]
    # job runners serve MLflow's GenAI features, which the project does not use
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    with log.open("w") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not answers(f"{address}/health"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start; see {log}")
            time.sleep(0.5)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=30)


def newest_run(client: MlflowClient, experiment: str, parents_only: bool) -> Run | None:
    """The newest run of ``experiment`` (by name), among top-level runs if ``parents_only``."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], order_by=["attribute.start_time DESC"])
    for run in runs:
        if not parents_only or PARENT_TAG not in run.data.tags:
            return run
    return None


def first_child(client: MlflowClient, parent: Run) -> Run | None:
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"
    )
    return children[0] if children else None


def run_route(run: Run, tab: str = "") -> str:
    route = f"/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    return f"{route}/{tab}" if tab else route


def pages(client: MlflowClient) -> tuple[list[Page], list[str]]:
    """The pages this store can show, and a note for each it cannot."""
    shown = [Page("experiments", "/experiments")]
    missing = []
    pretrain = newest_run(client, PRETRAIN_EXPERIMENT, parents_only=True)
    if pretrain is None:
        missing.append(f"no run in {PRETRAIN_EXPERIMENT}")
    else:
        shown += [
            Page("pretrain-runs", f"/experiments/{pretrain.info.experiment_id}/runs"),
            Page("pretrain-run", run_route(pretrain)),
            Page("pretrain-run-metrics", run_route(pretrain, "model-metrics")),
        ]
    parent = newest_run(client, EVALUATE_EXPERIMENT, parents_only=True)
    if parent is None:
        missing.append(f"no parent run in {EVALUATE_EXPERIMENT}")
    else:
        shown += [
            Page("evaluate-runs", f"/experiments/{parent.info.experiment_id}/runs"),
            Page("evaluate-parent", run_route(parent)),
        ]
        child = first_child(client, parent)
        if child is None:
            missing.append(f"evaluation run {parent.info.run_id} has no child runs")
        else:
            shown.append(Page("evaluate-child", run_route(child)))
    explain = newest_run(client, EXPLAIN_EXPERIMENT, parents_only=True)
    if explain is None:
        missing.append(f"no run in {EXPLAIN_EXPERIMENT}")
    else:
        shown += [
            Page("explain-run", run_route(explain)),
            Page("explain-run-metrics", run_route(explain, "model-metrics")),
        ]
    shown.append(Page("models", "/models"))
    models = client.search_registered_models(max_results=1)
    if models:
        shown.append(Page("model", f"/models/{models[0].name}"))
    else:
        missing.append("no registered model")
    return shown, missing


# The button beside a parent run's name in an experiment's run table (no accessible name).
EXPANDER = 'button[data-component-id*="runnamecellrenderer"]'


def expand_parent_runs(page) -> None:
    """Show every parent run's children in an experiment's run table (its ``+`` button)."""
    for button in page.locator(EXPANDER).all():
        button.click()
    page.wait_for_timeout(PAGE_SETTLE_MS // 2)


def prepare_ui(page) -> None:
    """Choose the UI's model-training workflow (its side bar; a GenAI one is the default)
    and close the assistant panel that opens on a first visit; both are remembered."""
    page.get_by_role("button", name="Model training", exact=True).click()
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()
    page.wait_for_timeout(PAGE_SETTLE_MS // 5)


def screenshot(address: str, shown: list[Page], out: Path, browser_path: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=BROWSER_FLAGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{address}/#/experiments", wait_until="load")
        page.wait_for_timeout(PAGE_SETTLE_MS)
        prepare_ui(page)
        for item in shown:
            page.goto(f"{address}/#{item.route}", wait_until="load")
            page.wait_for_timeout(PAGE_SETTLE_MS)
            page.keyboard.press("Escape")  # a first visit's announcement (model registry)
            page.wait_for_timeout(PAGE_SETTLE_MS // 5)
            if item.name == "evaluate-runs":
                expand_parent_runs(page)
            path = out / f"{item.name}.png"
            page.screenshot(path=str(path), full_page=True)
            saved.append(path)
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", default=DEFAULT_STORE, help="tracking URI (local store or server)"
    )
    parser.add_argument("--out", default="mlflow-screenshots", help="folder for the PNGs")
    parser.add_argument("--browser", default=DEFAULT_BROWSER, help="Chromium executable")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shown, missing = pages(MlflowClient(tracking_uri=args.store))
    with ui_server(args.store, out / "mlflow-server.log") as address:
        saved = screenshot(address, shown, out, args.browser)
    for path in saved:
        print(path)
    for note in missing:
        print(f"skipped: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
