"""``python jobs/predict.py ARGS``: ``wearssl predict ARGS`` on Ray, one task per file."""

import sys

from wearssl.commands.predict import main_on_ray

if __name__ == "__main__":
    raise SystemExit(main_on_ray(sys.argv[1:]))
