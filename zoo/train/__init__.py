"""Training: the data pipeline and the training loop shared by every likelihood vocoder."""
