"""Explainability: ``python jobs/explain.py [--config FILE] [key=value ...]``.

Relevance maps of a model's heads on held-out windows (integrated gradients, DeepLift,
input x gradient, LRP), their faithfulness by masking, plots and a Markdown summary,
logged to MLflow (experiment wearssl-explain). With no arguments:
configs/explain/quickstart.yaml, which explains the quickstart pre-training's model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wearssl.cli import run_job
from wearssl.config.explain import ExplainConfig
from wearssl.explain.attribution import run_explain

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "explain" / "quickstart.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. heads=[aot]")
    args = parser.parse_args()
    return run_job(ExplainConfig, args.config, args.overrides, run_explain)


if __name__ == "__main__":
    raise SystemExit(main())
