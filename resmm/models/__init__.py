"""Plain-PyTorch model library: residual encoders per modality, residual fusion, classifier heads."""
