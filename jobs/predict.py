"""Predict activities on many raw recordings on Ray, one task per file.

``python jobs/predict.py RECORDING... --model MODEL --out DIR [--no-hmm] [--collate]``
(``--help`` lists every option; docs/predict.md describes the outputs).
"""

from __future__ import annotations

import sys

from wearssl.predict.recordings import predict_parser, run_predict

if __name__ == "__main__":
    sys.exit(run_predict(predict_parser(distributed=True).parse_args(), distributed=True))
