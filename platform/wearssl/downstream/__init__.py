"""Downstream evaluation: the protocol's trials, fine-tuning, metrics, the Tune job."""
