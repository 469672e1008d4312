"""``python jobs/ablate.py ARGS`` is ``wearssl ablate ARGS`` (what ``ray job submit`` runs)."""

import sys

from wearssl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["ablate", *sys.argv[1:]]))
