"""Downstream evaluation: one trial of the protocol (shared with the ablations), fine-tuning,
metrics, and the evaluation job on Ray Tune with its results, plots and export."""
