"""``python jobs/ingest.py ARGS`` is ``wearssl ingest ARGS`` (what ``ray job submit`` runs)."""

import sys

from wearssl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["ingest", *sys.argv[1:]]))
