"""rnnjax: recurrent neural networks (vanilla RNN, LSTM, GRU) as pure JAX functions.

>>> import jax, jax.numpy as jnp, rnnjax
>>> cell = rnnjax.gru(16)
>>> params = cell.init(jax.random.key(0), input_size=4)
>>> carry, ys = rnnjax.rnn(cell, params, jnp.zeros((8, 10, 4)))
>>> ys.shape
(8, 10, 16)

The submodules ``rnnjax.nnx``, ``rnnjax.linen``, ``rnnjax.interop`` and ``rnnjax.training``
load on first use (``rnnjax.interop.from_torch(...)`` after a plain ``import rnnjax``), so
Flax's modules, torch and Keras are imported only when they are needed.
"""

import importlib
from typing import Any

from rnnjax._src.attention import AttentionParams as AttentionParams
from rnnjax._src.attention import AttentionState as AttentionState
from rnnjax._src.attention import attention as attention
from rnnjax._src.cells import GRUParams as GRUParams
from rnnjax._src.cells import LSTMParams as LSTMParams
from rnnjax._src.cells import LSTMState as LSTMState
from rnnjax._src.cells import SimpleRNNParams as SimpleRNNParams
from rnnjax._src.cells import gru as gru
from rnnjax._src.cells import lstm as lstm
from rnnjax._src.cells import matmul as matmul
from rnnjax._src.cells import simple_rnn as simple_rnn
from rnnjax._src.chunks import tbptt as tbptt
from rnnjax._src.compose import BidirectionalParams as BidirectionalParams
from rnnjax._src.compose import bidirectional as bidirectional
from rnnjax._src.compose import stack as stack
from rnnjax._src.contract import Cell as Cell
from rnnjax._src.contract import GateSplit as GateSplit
from rnnjax._src.contract import Layer as Layer
from rnnjax._src.contract import LinearScan as LinearScan
from rnnjax._src.contract import Projection as Projection
from rnnjax._src.contract import hidden_state as hidden_state
from rnnjax._src.decoding import Decoded as Decoded
from rnnjax._src.decoding import decode as decode
from rnnjax._src.diagonal_cells import DiagonalParams as DiagonalParams
from rnnjax._src.diagonal_cells import indrnn as indrnn
from rnnjax._src.diagonal_cells import para_gru as para_gru
from rnnjax._src.diagonal_cells import para_lstm as para_lstm
from rnnjax._src.driver import default_hoist as default_hoist
from rnnjax._src.driver import rnn as rnn
from rnnjax._src.driver import rnn_with_resets as rnn_with_resets
from rnnjax._src.layers import layer as layer
from rnnjax._src.linear import linear_recurrence as linear_recurrence
from rnnjax._src.lru_cells import LRUParams as LRUParams
from rnnjax._src.lru_cells import RGLRUParams as RGLRUParams
from rnnjax._src.lru_cells import lru as lru
from rnnjax._src.lru_cells import rg_lru as rg_lru
from rnnjax._src.lru_cells import (
    rg_lru_params_from_recurrentgemma as rg_lru_params_from_recurrentgemma,
)
from rnnjax._src.min_cells import MinRNNParams as MinRNNParams
from rnnjax._src.min_cells import min_gru as min_gru
from rnnjax._src.min_cells import min_lstm as min_lstm

__version__ = "0.1.0"

__all__ = (
    "AttentionParams",
    "AttentionState",
    "BidirectionalParams",
    "Cell",
    "Decoded",
    "DiagonalParams",
    "GRUParams",
    "GateSplit",
    "LRUParams",
    "LSTMParams",
    "LSTMState",
    "Layer",
    "LinearScan",
    "MinRNNParams",
    "Projection",
    "RGLRUParams",
    "SimpleRNNParams",
    "attention",
    "bidirectional",
    "decode",
    "default_hoist",
    "gru",
    "hidden_state",
    "indrnn",
    "layer",
    "linear_recurrence",
    "lru",
    "lstm",
    "matmul",
    "min_gru",
    "min_lstm",
    "para_gru",
    "para_lstm",
    "rg_lru",
    "rg_lru_params_from_recurrentgemma",
    "rnn",
    "rnn_with_resets",
    "simple_rnn",
    "stack",
    "tbptt",
)

_SUBMODULES = ("interop", "linen", "nnx", "training")


def __getattr__(name: str) -> Any:
    """Loads a submodule on first access (PEP 562)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"rnnjax.{name}")
    raise AttributeError(f"module 'rnnjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted((*globals(), *_SUBMODULES))
