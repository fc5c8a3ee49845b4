"""Exact weight conversion to and from PyTorch and Keras 3 recurrent layers.

torch and keras are optional (``pip install "rnnjax[interop]"``): each is imported only
inside the functions that need it.
"""

from rnnjax._src.interop_torch import from_torch as from_torch
from rnnjax._src.interop_torch import to_torch as to_torch

__all__ = ("from_torch", "to_torch")
