"""wearssl: self-supervised activity recognition on wrist accelerometry, distributed with Ray."""

__version__ = "0.1.0"
