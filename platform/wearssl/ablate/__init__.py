"""Data-scaling ablations: sweeps of pre-training and evaluation trials on Ray Tune."""
