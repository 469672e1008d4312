"""Dataset recipes: one call from a public benchmark, as downloaded, to a labelled set
processed the way the paper processed it (``jobs/datasets.py`` runs them)."""

# Capture-24's label scheme of the paper: a column of its annotation dictionary.
CAPTURE24_DEFAULT_SCHEME = "label:Walmsley2020"
