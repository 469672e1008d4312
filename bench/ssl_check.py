"""Are the self-supervised features worth having? A linear probe on real labelled data.

    python bench/ssl_check.py --set sets/wisdm --pretrained harnet10.pt --out runs/ssl-check \
        [--max-folds N] [--seed 0]

Evaluates the ``linear_probe`` arm (:mod:`wearssl.downstream.linear_probe`) through the
evaluation job's own machinery, once on the features of ``--pretrained`` and once on
those of a randomly initialised harnet of the same window length (seeded), with the
paper's folds of the set, and prints both rows and their difference. The probe trains no
network, so the comparison isolates what pre-training put into the features. For an
honest figure the pre-training corpus must hold none of the set's test subjects
(``bench/real_corpus.py --exclude-test-subjects``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from wearssl.config.evaluate import EvaluateConfig
from wearssl.data.labelled_set import read_labelled_set
from wearssl.downstream.evaluate import run_evaluation
from wearssl.models.harnet import harnet, save_checkpoint


def random_checkpoint(window_seconds: int, seed: int, out: Path) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(out, harnet(window_seconds), window_seconds=window_seconds)
    return out


def probe(set_path: str, weights: Path, name: str, out: Path, max_folds: int | None) -> dict:
    cfg = EvaluateConfig.model_validate(
        {
            "name": name,
            "output_dir": str(out),
            "datasets": [{"name": "set", "path": set_path}],
            "arms": ["linear_probe"],
            "pretrained": str(weights),
            "protocol": {"max_folds": max_folds},
            "plots": {"confusion": False, "umap": False},
            "export": {"enabled": False},
            "tracking": {"tracking_uri": str(out / "mlruns")},
        }
    )
    row = run_evaluation(cfg).summary_table.iloc[0]
    return {k: float(row[k]) for k in ("f1_mean", "f1_sd", "kappa_mean", "kappa_sd")} | {
        "n_subjects": int(row["n_subjects"])
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", required=True, help="labelled set folder")
    parser.add_argument("--pretrained", type=Path, required=True, help="checkpoint file")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-folds", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="of the random network")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    window_seconds = read_labelled_set(args.set).window_seconds
    random = random_checkpoint(window_seconds, args.seed, args.out / "random.pt")
    rows = {
        "pretrained": probe(
            args.set, args.pretrained, "ssl-check-pretrained", args.out, args.max_folds
        ),
        "random": probe(args.set, random, "ssl-check-random", args.out, args.max_folds),
    }
    rows["difference_f1"] = rows["pretrained"]["f1_mean"] - rows["random"]["f1_mean"]
    (args.out / "ssl_check.json").write_text(json.dumps(rows, indent=2))
    for features in ("pretrained", "random"):
        r = rows[features]
        print(
            f"linear probe on {features:<10} features: macro F1 {r['f1_mean']:.3f} ± "
            f"{r['f1_sd']:.3f}, kappa {r['kappa_mean']:.3f} ± {r['kappa_sd']:.3f} "
            f"({r['n_subjects']} test subjects)"
        )
    print(f"difference in macro F1: {rows['difference_f1']:+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
