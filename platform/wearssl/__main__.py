"""``python -m wearssl``: the ``wearssl`` command."""

from wearssl.cli import main

raise SystemExit(main())
