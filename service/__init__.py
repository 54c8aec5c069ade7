"""loss-service: PyTorch loss functions over HTTP."""

__version__ = "1.0.0"
