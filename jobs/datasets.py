"""``python jobs/datasets.py ARGS`` is ``wearssl datasets ARGS`` (what ``ray job submit`` runs)."""

import sys

from wearssl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["datasets", *sys.argv[1:]]))
