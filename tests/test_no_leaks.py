"""No secret in the repository, no raw subject id in MLflow, logs or reports.

(a) Every tracked file (``git ls-files``, with the untracked files git would add) is
scanned for private keys, cloud access keys, tokens, passwords and the like assigned
literal values, credentials in URLs, and literal pseudonymisation keys; a finding names
``file:line``. The placeholder keys the tests use may appear only under ``tests/`` (and
``bench/``, which ingests synthetic recordings only), and the key in force nowhere.

(b) A real small run: labelled CSV recordings in folders named by raw subject ids are
ingested (pseudonymised with a key drawn for this run) and evaluated on Ray Tune with
MLflow tracking. Then the MLflow store (the SQLite database dumped as text, every
experiment's, run's and model version's names, params, tags and metric names through the
client, every artifact file's bytes with Parquet tables decoded and zip/gzip members
unpacked), the job's output folder (reports) and everything the job printed are searched:
no raw id and no key appears, and the pseudonyms do.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import secrets
import sqlite3
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- (a) secrets in the repo


@dataclass(frozen=True)
class Finding:
    where: str  # file:line
    rule: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.where}: {self.rule}: {self.excerpt}"


_NAME = r"[\w.-]*"
_SECRET_WORDS = (
    r"(?:password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|"
    r"private[_-]?key|auth[_-]?key|client[_-]?secret|credentials?)"
)
_SP = r"[ \t]*"
SECRET_RULES: dict[str, re.Pattern[str]] = {
    # a key block: the header, then a base64 body line (a header alone only names one)
    "private key": re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[ \t]*(?:\\n|\r?\n)"
        r"(?:[\w-]+: .*\r?\n)*[ \t]*[A-Za-z0-9+/=]{40,}"
    ),
    # AWS's documented example ids end in EXAMPLE
    "AWS access key id": re.compile(
        r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA)(?![0-9A-Z]{9}EXAMPLE)[0-9A-Z]{16}\b"
    ),
    "AWS secret access key": re.compile(
        rf"(?i)aws.?secret.?access.?key['\"]?{_SP}[:=]{_SP}['\"]?[A-Za-z0-9/+=]{{40}}(?![A-Za-z0-9/+=])"
    ),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{22,})"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "OpenAI-style key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "credentials in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^/\s:@'\"]+@[\w.-]+"),
    # a name with password, token, api key... in it, then =, : or a comma, then a quoted
    # literal of 8 or more characters (an environment variable's name passes)
    "secret assigned a literal": re.compile(
        rf"(?i)\b{_NAME}{_SECRET_WORDS}{_NAME}['\"]?{_SP}(?:=|:|,){_SP}[rbu]?['\"]"
        r"(?P<value>[^'\"\s]{8,})['\"]"
    ),
}
# Literal values that name a secret's place rather than being one.
PLACEHOLDER_VALUE = re.compile(
    r"^(?:[A-Z][A-Z0-9_]*|\$\{?\w+\}?.*|<[^>]*>|your[-_].*|.*example.*|changeme|x{8,}|\*{8,})$",
    re.IGNORECASE,
)
# A literal pseudonymisation key: the environment variable set, or the tests' helper called.
PSEUDONYM_KEY_LITERAL = re.compile(
    rf"""(?:WEARSSL_PSEUDONYM_KEY['"]?{_SP}(?:\]{_SP}=|,|=|:){_SP}|pseudonym_key_set_to\({_SP})"""
    r"""[rbu]?['"](?P<value>[^'"\n]+)['"]"""
)
PLACEHOLDER_KEY_FOLDERS = ("tests/", "bench/")
MIN_KEY_SEARCHED = 8  # shorter placeholders ("bench") are words found anywhere


def tracked_files(repo: Path = REPO) -> list[str]:
    """Tracked files, and the untracked ones git would add (not ignored): about to be."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in listing.decode().split("\0") if name]


def tracked_texts(repo: Path, names: list[str]) -> Iterator[tuple[str, str]]:
    """(path, text) of every listed file (a binary file's bytes read as Latin-1, so a key
    in an image or a pickle is still seen)."""
    for name in names:
        path = repo / name
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            try:
                yield name, data.decode("utf-8")
            except UnicodeDecodeError:
                yield name, data.decode("latin-1")


def _finding(name: str, text: str, offset: int, rule: str) -> Finding:
    number = text.count("\n", 0, offset) + 1
    line = text.splitlines()[number - 1] if text else ""
    return Finding(f"{name}:{number}", rule, line.strip()[:120])


def secret_findings(repo: Path, names: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    test_keys: dict[str, str] = {}
    texts = list(tracked_texts(repo, names))
    for name, text in texts:
        for rule, pattern in SECRET_RULES.items():
            for match in pattern.finditer(text):
                value = match.groupdict().get("value")
                if value is None or not PLACEHOLDER_VALUE.match(value):
                    findings.append(_finding(name, text, match.start(), rule))
        for match in PSEUDONYM_KEY_LITERAL.finditer(text):
            if name.startswith(PLACEHOLDER_KEY_FOLDERS):
                origin = _finding(name, text, match.start(), "").where
                test_keys.setdefault(match["value"], origin)
            else:
                findings.append(_finding(name, text, match.start(), "literal pseudonymisation key"))
    for key, origin in test_keys.items():
        if len(key) < MIN_KEY_SEARCHED:
            continue
        rule = f"the test pseudonymisation key {key!r} of {origin}"
        for name, text in texts:
            if not name.startswith(PLACEHOLDER_KEY_FOLDERS):
                findings += [
                    _finding(name, text, m.start(), rule) for m in re.finditer(re.escape(key), text)
                ]
    return findings


def test_no_tracked_file_holds_a_secret() -> None:
    names = tracked_files()
    assert len(names) > 20 and "tests/conftest.py" in names
    findings = secret_findings(REPO, names)
    assert not findings, "secrets in tracked files:\n" + "\n".join(map(str, findings))


def test_the_pseudonymisation_key_in_force_is_in_no_tracked_file() -> None:
    """The key this environment sets (CI's per-run key file, a developer's variable) is
    not committed; the default key file in the home directory is left unread."""
    key = os.environ.get("WEARSSL_PSEUDONYM_KEY", "")
    key_file = os.environ.get("WEARSSL_PSEUDONYM_KEY_FILE", "")
    if not key and key_file and Path(key_file).is_file():
        key = Path(key_file).read_text().strip()
    if len(key) < MIN_KEY_SEARCHED:
        pytest.skip("no pseudonymisation key of 8 or more characters is set in the environment")
    hits = [name for name, text in tracked_texts(REPO, tracked_files()) if key in text]
    assert not hits, f"the pseudonymisation key in force appears in {hits}"


def planted_repo(tmp_path: Path, files: dict[str, str]) -> tuple[Path, list[str]]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path, sorted(files)


# Samples built by concatenation, so this file itself holds none of them.
PLANTED = {
    "private key": "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n" + "b3BlbnNzaC1rZXktdjEA" * 3 + "\n",
    "AWS access key id": "aws_key_id = " + "AKIA" + "Q3EGRIXYZ7LMN4OP\n",
    "AWS secret access key": "aws_secret_access_key="
    + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY"
    + "EXAMPLEKEY\n",
    "GitHub token": "GH = '" + "ghp_" + "a1B2" * 9 + "'\n",
    "credentials in a URL": "uri: postgresql://" + "mlflow:" + "s3cr3tpw@db.internal/mlflow\n",
    "secret assigned a literal": "db_password = " + '"' + "correct-horse-battery" + '"\n',
}


@pytest.mark.parametrize("rule", PLANTED)
def test_the_scan_finds_a_planted_secret_naming_file_and_line(tmp_path: Path, rule: str) -> None:
    repo, names = planted_repo(tmp_path, {"conf/settings.py": "# settings\n" + PLANTED[rule]})
    findings = secret_findings(repo, names)
    assert [(f.where, f.rule) for f in findings] == [("conf/settings.py:2", rule)]


@pytest.mark.parametrize(
    "line",
    [
        'KEY_ENV = "WEARSSL_PSEUDONYM_KEY"',
        'token_env = "MLFLOW_TRACKING_TOKEN"',
        "export RAY_AUTH_MODE=token",
        'password = "${DB_PASSWORD}"',
        'api_key: "<your api key>"',
        "secret = os.environ['SECRET']",
        "uri: s3://your-bucket/wearssl",
    ],
)
def test_the_scan_lets_names_of_secrets_pass(tmp_path: Path, line: str) -> None:
    repo, names = planted_repo(tmp_path, {"a.py": line + "\n"})
    assert secret_findings(repo, names) == []


def test_literal_pseudonymisation_keys_are_test_placeholders_only(tmp_path: Path) -> None:
    variable = "WEARSSL_PSEUDONYM" + "_KEY"
    assignment = f"os.environ['{variable}'] = 'unit-key-7f3a'\n"
    repo, names = planted_repo(
        tmp_path,
        {
            "tests/test_x.py": assignment,
            "platform/job.py": "KEY = 'unit-key-7f3a'  # copied from a test\n",
            "scripts/run.sh": f"export {variable}='real-looking-key'\n",
        },
    )
    found = {(f.where, f.rule.split(" of ")[0]) for f in secret_findings(repo, names)}
    assert found == {
        ("platform/job.py:1", "the test pseudonymisation key 'unit-key-7f3a'"),
        ("scripts/run.sh:1", "literal pseudonymisation key"),
    }


# ---------------------------------------------------------------- (b) a run, then MLflow

RAW_IDS = [
    "RAWSUBJ-ALPHA-7301",
    "RAWSUBJ-BRAVO-7302",
    "RAWSUBJ-CHARLIE-7303",
    "RAWSUBJ-DELTA-7304",
    "RAWSUBJ-ECHO-7305",
]
RATE_HZ = 30


def write_raw_recordings(root: Path) -> None:
    """One labelled CSV per subject, in a folder named by the raw id (as a study exports
    them): 20 s each of sit, walk and run, told apart by the signal's spread."""
    spread = {"sit": 0.02, "walk": 0.3, "run": 0.9}
    for index, raw in enumerate(RAW_IDS):
        rng = np.random.default_rng(index)
        labels = np.repeat(list(spread), 20 * RATE_HZ)
        scale = np.array([spread[label] for label in labels])
        n = len(labels)
        folder = root / raw
        folder.mkdir(parents=True)
        pd.DataFrame(
            {
                "ts": 1_700_000_000_000 + np.rint(np.arange(n) * 1000 / RATE_HZ).astype(np.int64),
                "ax": rng.normal(0, 1, n) * scale,
                "ay": rng.normal(0, 1, n) * scale,
                "az": 1 + rng.normal(0, 1, n) * scale,
                "activity": labels,
            }
        ).to_csv(folder / "wrist.csv", index=False)


def blobs_of_file(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of a file's content: Parquet tables decoded to JSON text, zip and gzip
    members unpacked (recursively), SQLite databases dumped as SQL text, else the bytes."""
    data = path.read_bytes()
    yield from blobs_of_bytes(str(path), data, path)


def blobs_of_bytes(name: str, data: bytes, path: Path | None = None) -> Iterator[tuple[str, bytes]]:
    yield name, data
    if data[:4] == b"PAR1":
        table = pq.read_table(io.BytesIO(data))
        text = json.dumps(
            {"schema": str(table.schema), "rows": table.to_pylist()},
            default=str,
            ensure_ascii=False,
        )
        yield f"{name} (decoded)", text.encode()
    elif data[:2] == b"\x1f\x8b":
        yield from blobs_of_bytes(f"{name} (gunzipped)", gzip.decompress(data))
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                yield name + "!" + member, member.encode()
                yield from blobs_of_bytes(f"{name}!{member}", archive.read(member))
    elif data[:16] == b"SQLite format 3\x00" and path is not None:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            dump = "\n".join(connection.iterdump())
        yield f"{name} (SQL dump)", dump.encode()


def blobs_of_folder(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        yield str(path), str(path.relative_to(root)).encode()  # names of files and folders
        if path.is_file() and not path.is_symlink():
            yield from blobs_of_file(path)


def tracking_blobs(uri: str) -> Iterator[tuple[str, bytes]]:
    """What the MLflow API shows: experiments, runs, params, tags, metric names, models."""
    client = mlflow.MlflowClient(uri)
    for experiment in client.search_experiments():
        yield (
            f"experiment {experiment.experiment_id}",
            json.dumps([experiment.name, experiment.tags, experiment.artifact_location]).encode(),
        )
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            data = {
                "name": run.info.run_name,
                "params": run.data.params,
                "tags": run.data.tags,
                "metrics": sorted(run.data.metrics),
                "inputs": str(run.inputs),
            }
            yield f"run {run.info.run_id}", json.dumps(data).encode()
    for model in client.search_registered_models():
        yield (
            f"model {model.name}",
            json.dumps([model.name, model.description, model.tags]).encode(),
        )
        for version in client.search_model_versions(f"name = '{model.name}'"):
            yield (
                f"model {model.name}/{version.version}",
                json.dumps(
                    [version.source, version.run_id, version.description, version.tags]
                ).encode(),
            )


def hits(blobs: list[tuple[str, bytes]], needles: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for needle in needles:
        encoded = needle.encode()
        places = [name for name, data in blobs if encoded in data]
        if places:
            found[needle] = places
    return found


def test_the_store_scan_finds_an_id_wherever_mlflow_keeps_it(
    tmp_path: Path, sqlite_tracking: str
) -> None:
    """The scan of test (b) would see a raw id in any of these places (so its finding
    nothing means something): a run name, a param, a tag, a metric name, a registered
    model's description, a CSV, a compressed Parquet column, a zip member and a gzip file."""
    store = Path(sqlite_tracking.removeprefix("sqlite:///")).parent
    planted = {place: f"RAWSUBJ-PLANTED-{place.upper()}" for place in PLANTED_PLACES}
    staging = tmp_path / "staging"
    staging.mkdir()
    pd.DataFrame({"subject": [planted["csv"]], "f1": [0.5]}).to_csv(staging / "s.csv")
    pq.write_table(
        pa.table({"subject": [planted["parquet"]] * 50}), staging / "p.parquet", compression="zstd"
    )
    with zipfile.ZipFile(staging / "m.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.pkl", planted["zip"] * 3)
    (staging / "t.json.gz").write_bytes(gzip.compress(json.dumps([planted["gzip"]]).encode()))
    client = mlflow.MlflowClient(sqlite_tracking)
    from wearssl.infra.tracking import experiment_id

    run = client.create_run(experiment_id("leak-scan", sqlite_tracking), run_name=planted["run"])
    client.log_param(run.info.run_id, "subject", planted["param"])
    client.set_tag(run.info.run_id, "who", planted["tag"])
    client.log_metric(run.info.run_id, f"f1.{planted['metric']}", 0.5)
    client.log_artifacts(run.info.run_id, str(staging), artifact_path="results")
    client.create_registered_model("leak-scan", description=planted["model"])
    client.set_terminated(run.info.run_id)

    blobs = [*blobs_of_folder(store), *tracking_blobs(sqlite_tracking)]
    found = hits(blobs, list(planted.values()))
    assert set(found) == set(planted.values()), sorted(set(planted.values()) - set(found))
    in_artifacts = {
        place
        for place in ("csv", "parquet", "zip", "gzip")
        if any("artifacts" in name for name in found[planted[place]])
    }
    assert in_artifacts == {"csv", "parquet", "zip", "gzip"}
    assert any(name.endswith("(decoded)") for name in found[planted["parquet"]])
    # deflated, an id is seen only once unpacked
    assert all(name.endswith("(gunzipped)") for name in found[planted["gzip"]]), found
    assert all(name.endswith("!data.pkl") for name in found[planted["zip"]]), found


PLANTED_PLACES = ("run", "param", "tag", "metric", "model", "csv", "parquet", "zip", "gzip")


@pytest.fixture()
def leak_key() -> Iterator[str]:
    """A pseudonymisation key drawn for this run, so that finding it anywhere is a leak."""
    saved = os.environ.get("WEARSSL_PSEUDONYM_KEY")
    key = "leak-test-" + secrets.token_hex(16)
    os.environ["WEARSSL_PSEUDONYM_KEY"] = key
    yield key
    if saved is None:
        del os.environ["WEARSSL_PSEUDONYM_KEY"]
    else:
        os.environ["WEARSSL_PSEUDONYM_KEY"] = saved


@pytest.mark.slow
def test_an_ingested_and_evaluated_run_logs_no_raw_subject_id_and_no_key(
    tmp_path: Path,
    ray_local,
    sqlite_tracking: str,
    leak_key: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from wearssl.config.evaluate import EvaluateConfig
    from wearssl.data.ingest_labelled import CsvColumns, LabelledOptions, import_labelled
    from wearssl.data.privacy import pseudonymise
    from wearssl.downstream.evaluate import run_evaluation

    raw = tmp_path / "raw"
    write_raw_recordings(raw)
    options = LabelledOptions(
        name="leak-check",
        window_seconds=5,
        columns=CsvColumns(time="ts", x="ax", y="ay", z="az", label="activity"),
        subject_from="folder",
    )
    summary = import_labelled([str(raw)], str(tmp_path / "set"), options)
    assert summary.subjects == len(RAW_IDS)
    cfg = EvaluateConfig.model_validate(
        {
            "name": "leak-check",
            "output_dir": str(tmp_path / "out"),
            "datasets": [{"name": "leaky", "path": str(tmp_path / "set")}],
            "arms": ["forest", "scratch"],
            "protocol": {"max_folds": 2},
            "finetune": {"lr": 1e-3, "batch_size": 8, "max_epochs": 1, "patience": 1},
            "forest": {"n_estimators": 10},
            "resources": {"cpus_per_trial": 1},
            "plots": {"confusion": True, "umap": False},
            "export": {"enabled": True, "registered_model": "leak-{dataset}"},
            "tracking": {"tracking_uri": sqlite_tracking},
        }
    )
    result = run_evaluation(cfg)
    printed = capfd.readouterr()

    store = Path(sqlite_tracking.removeprefix("sqlite:///")).parent
    blobs = [
        *blobs_of_folder(store),
        *tracking_blobs(sqlite_tracking),
        *blobs_of_folder(result.output),
        ("printed output", (printed.out + printed.err).encode()),
    ]
    assert any("artifacts" in name and name.endswith(".parquet") for name, _ in blobs)
    leaks = hits(blobs, [*RAW_IDS, leak_key])
    assert not leaks, "raw subject ids or the key found in: " + json.dumps(leaks, indent=1)
    # the scan sees subject-level outputs: the evaluated subjects' pseudonyms are there
    artifacts = [(n, d) for n, d in blobs if n.startswith(str(store)) and "artifacts" in n]
    found = hits(artifacts, [pseudonymise(r) for r in RAW_IDS])
    tested = set(result.scores["subject"]) if "subject" in result.scores else set()
    assert len(found) >= 2 and tested <= set(found), (sorted(found), sorted(tested))
