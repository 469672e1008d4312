"""Self-supervised pre-training: ``python jobs/pretrain.py [--config FILE] [key=value ...]``.

With no arguments: local Ray, configs/pretrain/quickstart.yaml, a small synthetic corpus,
and a local MLflow store under ./mlruns.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wearssl.cli import run_job
from wearssl.config.pretrain import PretrainConfig
from wearssl.pretrain.train import run_pretraining

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "quickstart.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.epochs=3")
    args = parser.parse_args()
    return run_job(PretrainConfig, args.config, args.overrides, run_pretraining)


if __name__ == "__main__":
    raise SystemExit(main())
