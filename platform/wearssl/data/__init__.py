"""Data: device files, preprocessing, the corpus format, labelled sets, ingest, dataset
recipes, the sampler, splits, privacy, synthetic data."""

# Where a labelled recording's subject comes from: its file name or its folder's name
# (kept here, free of heavy imports, for the command line's choices).
SUBJECT_SOURCES = ("file", "folder")
