"""Tensor codecs: JSON forms, .npy and multipart in; JSON or .npy out. Limits are checked first."""

from .tensors import Decoded, decode_tensor

__all__ = ["Decoded", "decode_tensor"]
