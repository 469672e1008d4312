"""Self-supervised pre-training: pretext transforms and the Ray Train job."""
