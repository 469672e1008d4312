"""Data: device files, preprocessing, the corpus format, labelled sets, ingest, dataset
recipes, the sampler, splits, privacy, synthetic data."""
