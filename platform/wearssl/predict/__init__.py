"""Activity prediction on new recordings with an exported model."""
