"""Training: the per-worker loop, losses and metrics, and the driver that builds the TorchTrainer."""
