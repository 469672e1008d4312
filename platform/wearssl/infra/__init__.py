"""Runtime plumbing: the Ray cluster and CPU plan, Ray Tune experiments, MLflow tracking."""
