"""A real unlabelled pre-training corpus: raw recordings plus labelled sets, labels dropped.

    python bench/real_corpus.py --recordings E4_CORPUS --labelled wisdm=sets/wisdm \
        --labelled geotec=sets/geotec10 --exclude-test-subjects wisdm --out corpus/real

Copies the subject-days of the ``--recordings`` corpus (made by ``jobs/ingest.py``) and
adds every labelled set's windows, labels dropped, thinned to non-overlapping
(:mod:`wearssl.data.corpus_from_labelled`). For each set named by
``--exclude-test-subjects``, every subject that the paper's protocol ever tests on (any of
its folds, ``--split-seed``) is left out, so the downstream check on that set sees
subjects the pre-trained model never saw. Prints what the corpus holds, per source.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from wearssl.data import corpus
from wearssl.data.corpus_from_labelled import add_labelled_windows
from wearssl.data.labelled_set import LabelledSet, read_labelled_set
from wearssl.data.splits import protocol_folds


def test_subjects(labelled: LabelledSet, split_seed: int) -> set[str]:
    """Every subject in the test part of any fold of the paper's protocol."""
    folds = protocol_folds(labelled.subjects, seed=split_seed)
    return {s for fold in folds for s in labelled.subjects[fold.test].tolist()}


def copy_corpus(source: Path, out: Path) -> int:
    """Copy an ingested corpus (days, manifest, info) to ``out``; its windows count."""
    shutil.copytree(source / corpus.DAYS_DIR, out / corpus.DAYS_DIR, dirs_exist_ok=True)
    for name in (corpus.MANIFEST_NAME, corpus.INFO_NAME):
        shutil.copy2(source / name, out / name)
    return int(sum(corpus.read_manifest(out)["n_wear"].to_pylist()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=Path, help="an ingested corpus to start from")
    parser.add_argument("--labelled", action="append", default=[], metavar="NAME=SET")
    parser.add_argument("--exclude-test-subjects", action="append", default=[], metavar="NAME")
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.out.exists():
        print(f"error: --out {args.out} exists; choose a new folder", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True)
    sources = {}
    if args.recordings is not None:
        sources[args.recordings.name] = {"windows": copy_corpus(args.recordings, args.out)}
    for item in args.labelled:
        name, _, path = item.partition("=")
        labelled = read_labelled_set(path)
        excluded = (
            test_subjects(labelled, args.split_seed)
            if name in args.exclude_test_subjects
            else set()
        )
        added = add_labelled_windows(str(args.out), labelled, exclude=excluded)
        sources[name] = {
            "windows": sum(added.values()),
            "subjects": len(added),
            "excluded_test_subjects": len(excluded),
        }
    manifest = corpus.read_manifest(args.out)
    summary = {
        "sources": sources,
        "subjects": len(set(manifest["subject"].to_pylist())),
        "windows": int(sum(manifest["n_wear"].to_pylist())),
        "test_split_subjects": len(
            {
                s
                for s, p in zip(
                    manifest["subject"].to_pylist(), manifest["split"].to_pylist(), strict=True
                )
                if p == "test"
            }
        ),
    }
    (args.out / "sources.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
