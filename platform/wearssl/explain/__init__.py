"""Explanations: attribution of predictions to samples, and its faithfulness."""
