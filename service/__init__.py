"""loss-service: PyTorch loss functions over HTTP."""

import os

# torch's OpenMP threads otherwise spin for a while after every parallel region, waiting for
# the next: a core burnt per small request (~1 ms of CPU each on a 2-core box, taken from the
# event loop and from other processes). Sleeping costs a wake-up per region, which large
# requests do not notice. Set before torch is imported; an operator's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "1.0.0"
