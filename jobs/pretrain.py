"""``python jobs/pretrain.py ARGS`` is ``wearssl pretrain ARGS`` (what ``ray job submit`` runs)."""

import sys

from wearssl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["pretrain", *sys.argv[1:]]))
