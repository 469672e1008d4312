"""``python jobs/synth.py ARGS`` is ``wearssl synth ARGS`` (what ``ray job submit`` runs)."""

import sys

from wearssl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["synth", *sys.argv[1:]]))
