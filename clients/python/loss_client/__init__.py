"""A small client for loss-service (numpy + httpx, no torch) and the ``loss-client`` CLI.

>>> from loss_client import Client
>>> with Client("http://127.0.0.1:8000") as client:
...     result = client.evaluate("mse", {"input": x, "target": y}, return_grad=True)
...     result.value, result.grad["input"]
"""

from loss_client.client import Client, Result
from loss_client.errors import LossServiceError

__all__ = ["Client", "LossServiceError", "Result"]
__version__ = "1.0.0"
