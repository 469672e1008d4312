"""The labelled sets of a job: materialised once by the driver, loaded by every trial.

The driver turns each configured set into a :class:`DatasetPlan` (a path every node can
read, a synthetic set generated there first); a trial loads the plan and takes its fold
from the protocol. Digests of the sets' files decide whether a re-run resumes earlier
trials.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from wearssl.config.evaluate import Dataset, Protocol
from wearssl.config.vocabulary import WINDOW_LENGTHS
from wearssl.data.corpus import SAMPLE_RATE_HZ, join, resolve, window_samples
from wearssl.data.labelled_set import (
    INFO_NAME,
    WINDOWS_NAME,
    LabelledSet,
    read_labelled_set,
    write_labelled_set,
)
from wearssl.data.splits import Fold, protocol_folds, subset_subjects
from wearssl.models.harnet import CheckpointError, harnet


@dataclass(frozen=True)
class DatasetPlan:
    """A labelled set as a trial reads it: its name in the config, a path every node can
    read, the number of subjects kept (None: all) and the neural arms' batch size."""

    name: str
    path: str
    subjects: int | None = None
    batch_size: int | None = None

    def load(self, split_seed: int) -> LabelledSet:
        return load_dataset(self.name, self.path, self.subjects, split_seed, self.batch_size)


def load_dataset(
    name: str, path: str, subjects: int | None, split_seed: int, batch_size: int | None = None
) -> LabelledSet:
    """The labelled set at ``path`` under the config's dataset ``name``, reduced to
    ``subjects`` subjects when given, trained with ``batch_size`` when given."""
    data = replace(read_labelled_set(path), name=name)
    if batch_size is not None:
        data = replace(data, batch_size=batch_size)
    if data.window_seconds not in WINDOW_LENGTHS:
        raise ValueError(
            f"labelled set {path} has {data.window_seconds}-s windows; harnet exists for "
            f"{list(WINDOW_LENGTHS)} s"
        )
    if subjects is not None:
        data = data.subset(subset_subjects(data.subjects, subjects, split_seed))
    return data


def materialise_dataset(dataset: Dataset, data_dir: Path) -> str:
    """Absolute path of the dataset's labelled set; a synthetic one is (re)generated there.

    The generator is deterministic and fast, so writing it each time keeps it in step
    with its config.
    """
    if dataset.path is not None:
        return dataset.path if "://" in dataset.path else resolve(dataset.path)[1]
    from wearssl.data.synthetic import synthetic_labelled_set

    settings = dataset.synthetic
    out = data_dir / dataset.name
    write_labelled_set(
        str(out),
        synthetic_labelled_set(
            settings.subjects,
            seed=settings.seed,
            window_seconds=settings.window_seconds,
            minutes_per_activity=settings.minutes_per_activity,
            name=dataset.name,
        ),
    )
    return str(out)


def plan_dataset(dataset: Dataset, data_dir: Path) -> DatasetPlan:
    """Materialise ``dataset`` (see :func:`materialise_dataset`) and plan its loading."""
    path = materialise_dataset(dataset, data_dir)
    return DatasetPlan(dataset.name, path, dataset.subjects, dataset.batch_size)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a local file or a file at a URI."""
    fs, location = resolve(path)
    digest = hashlib.sha256()
    with fs.open_input_stream(location) as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def dataset_digest(path: str) -> str:
    """Digest of a labelled set's content: a re-import with other data changes it, a
    re-generated identical synthetic set does not."""
    root = path.rstrip("/")
    return ":".join(file_digest(f"{root}/{name}") for name in (INFO_NAME, WINDOWS_NAME))


def value_digest(value: object) -> str:
    """SHA-256 of a JSON-able value, independent of its dicts' key order."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def labelled_window_seconds(path: str) -> int:
    """A labelled set's window length, read without its windows."""
    fs, root = resolve(path)
    with fs.open_input_stream(join(root, INFO_NAME)) as f:
        return int(json.loads(f.read())["window_seconds"])


def labelled_subject_column(path: str) -> np.ndarray:
    """The subject of every window, read without the windows themselves."""
    fs, root = resolve(path)
    table = pq.read_table(join(root, WINDOWS_NAME), columns=["subject"], filesystem=fs)
    return np.asarray(table["subject"].to_pylist(), dtype=object)


def evaluation_folds(subjects: np.ndarray, protocol: Protocol) -> list[Fold]:
    """The protocol's subject-wise folds of a set with these window ``subjects``."""
    folds = protocol_folds(
        subjects,
        seed=protocol.split_seed,
        n_splits=protocol.n_splits,
        test_size=protocol.test_size,
        val_fraction=protocol.val_fraction,
    )
    return folds[: protocol.max_folds] if protocol.max_folds else folds


def with_training_subjects(subjects: np.ndarray, fold: Fold, n: int, seed: int) -> Fold:
    """``fold`` with its training windows reduced to ``n`` of its training subjects, drawn
    by ``seed`` as a prefix of one permutation (so smaller sets nest in larger ones)."""
    keep = subset_subjects(subjects[fold.train], n, seed)
    return Fold(fold.name, fold.train[keep], fold.val, fold.test)


def check_weights_fit(data: LabelledSet, what: str, path: str | Path) -> None:
    """Raise a :class:`CheckpointError` naming the dataset and the weights unless the
    weights load into harnet for the dataset's window length."""
    try:
        harnet(data.window_seconds, pretrained=path)
    except CheckpointError as err:
        raise CheckpointError(
            f"dataset {data.name!r} has {data.window_seconds}-s windows "
            f"({window_samples(data.window_seconds)} samples at {SAMPLE_RATE_HZ} Hz), but "
            f"{what} do not fit harnet{data.window_seconds}: {err}"
        ) from None
