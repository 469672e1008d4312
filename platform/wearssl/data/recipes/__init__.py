"""Dataset recipes: one call from a public benchmark, as downloaded, to a labelled set
processed the way the paper processed it (``jobs/datasets.py`` runs them)."""
