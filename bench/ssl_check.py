"""Are the self-supervised features worth having? A linear probe on real labelled data.

    python bench/ssl_check.py --set sets/wisdm --pretrained harnet10.pt --out runs/ssl-check \
        [--max-folds N] [--seed 0]

The ``linear_probe`` arm (:mod:`wearssl.downstream.linear_probe`) on the paper's folds of
the set, once on the features of ``--pretrained`` and once on those of a randomly
initialised harnet of the same window length (seeded): the same folds, the same probe
(:func:`fit_probe`), the same per-subject scores as the evaluation job, with each
network's features computed once for the whole set rather than once per fold (the
evaluation job's trials are independent processes and cannot share them). The probe
trains no network, so the comparison isolates what pre-training put into the features.
For an honest figure the pre-training corpus holds none of the set's test subjects
(``bench/real_corpus.py --exclude-test-subjects``). Prints both rows and their
difference; writes ``OUT/ssl_check.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from wearssl.config.evaluate import Protocol
from wearssl.data.labelled_set import LabelledSet, read_labelled_set
from wearssl.downstream.datasets import evaluation_folds
from wearssl.downstream.linear_probe import FEATURE_BATCH_WINDOWS, fit_probe, frozen_features
from wearssl.downstream.metrics import per_subject_scores, summarise
from wearssl.models.harnet import harnet, save_checkpoint


def random_checkpoint(window_seconds: int, seed: int, out: Path) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(out, harnet(window_seconds), window_seconds=window_seconds)
    return out


def cached_features(data: LabelledSet, weights: Path, out: Path) -> np.ndarray:
    """The frozen features of every window, kept in ``out`` under the weights' digest so
    that a rerun (more folds, another seed of the probe) does not compute them again."""
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    path = out / f"features-{data.name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    features = frozen_features(weights, data.windows, data.window_seconds, FEATURE_BATCH_WINDOWS)
    np.save(path, features)
    return features


def probe_scores(
    data: LabelledSet, weights: Path, protocol: Protocol, arm: str, out: Path
) -> pd.DataFrame:
    """Per-test-subject scores of the probe on ``weights``' features, every fold."""
    features = cached_features(data, weights, out)
    labels = list(range(len(data.label_names)))
    frames = []
    for fold in evaluation_folds(data.subjects, protocol):
        probabilities, _ = fit_probe(features, data.labels, fold, seed=0, n_classes=len(labels))
        scores = per_subject_scores(
            data.labels[fold.test], probabilities.argmax(1), data.subjects[fold.test], labels
        )
        frames.append(scores.assign(dataset=data.name, arm=arm, fold=fold.name, seed=0))
    return pd.concat(frames, ignore_index=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", required=True, help="labelled set folder")
    parser.add_argument("--pretrained", type=Path, required=True, help="checkpoint file")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-folds", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="of the random network")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = read_labelled_set(args.set)
    protocol = Protocol(max_folds=args.max_folds)
    random = random_checkpoint(data.window_seconds, args.seed, args.out / "random.pt")
    scores = pd.concat(
        [
            probe_scores(data, args.pretrained, protocol, "pretrained", args.out),
            probe_scores(data, random, protocol, "random", args.out),
        ],
        ignore_index=True,
    )
    rows = {}
    for features, frame in scores.groupby("arm"):
        table = summarise(frame.assign(arm="linear_probe")).iloc[0]
        rows[features] = {
            k: float(table[k]) for k in ("f1_mean", "f1_sd", "kappa_mean", "kappa_sd")
        } | {"n_subjects": int(table["n_subjects"]), "n_scores": int(table["n_scores"])}
    rows["difference_f1"] = rows["pretrained"]["f1_mean"] - rows["random"]["f1_mean"]
    rows["folds"] = int(scores["fold"].nunique())
    rows["wall_s"] = time.perf_counter() - started
    scores.to_csv(args.out / "scores.csv", index=False)
    (args.out / "ssl_check.json").write_text(json.dumps(rows, indent=2))
    for features in ("pretrained", "random"):
        r = rows[features]
        print(
            f"linear probe on {features:<10} features: macro F1 {r['f1_mean']:.3f} ± "
            f"{r['f1_sd']:.3f}, kappa {r['kappa_mean']:.3f} ± {r['kappa_sd']:.3f} "
            f"({r['n_subjects']} test subjects, {rows['folds']} folds)"
        )
    print(f"difference in macro F1: {rows['difference_f1']:+.3f} ({rows['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
