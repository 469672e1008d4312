"""``python jobs/explain.py ARGS`` is ``wearssl explain ARGS`` (what ``ray job submit`` runs)."""

import sys

from wearssl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["explain", *sys.argv[1:]]))
