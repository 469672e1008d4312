"""Activity prediction on new recordings with an exported model."""

# Names the command line shows; kept here, free of heavy imports, so that ``--help`` is quick.
COLLATED_NAME = "collated-Daily.csv"
DEFAULT_BATCH_SIZE = 512  # windows per inference batch
