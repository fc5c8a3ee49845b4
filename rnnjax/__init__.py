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
from rnnjax._src.cells import simple_rnn as simple_rnn
from rnnjax._src.chunks import tbptt as tbptt
from rnnjax._src.compose import BidirectionalParams as BidirectionalParams
from rnnjax._src.compose import bidirectional as bidirectional
from rnnjax._src.compose import stack as stack
from rnnjax._src.contract import Cell as Cell
from rnnjax._src.contract import DiagonalJacobian as DiagonalJacobian
from rnnjax._src.contract import GateSplit as GateSplit
from rnnjax._src.contract import Layer as Layer
from rnnjax._src.contract import LinearScan as LinearScan
from rnnjax._src.contract import Projection as Projection
from rnnjax._src.decoding import Decoded as Decoded
from rnnjax._src.decoding import decode as decode
from rnnjax._src.diagonal_cells import DiagonalParams as DiagonalParams
from rnnjax._src.diagonal_cells import indrnn as indrnn
from rnnjax._src.diagonal_cells import para_gru as para_gru
from rnnjax._src.diagonal_cells import para_lstm as para_lstm
from rnnjax._src.driver import rnn as rnn
from rnnjax._src.layers import layer as layer
from rnnjax._src.linear import linear_recurrence as linear_recurrence
from rnnjax._src.lru_cells import LRUParams as LRUParams
from rnnjax._src.lru_cells import RGLRUParams as RGLRUParams
from rnnjax._src.lru_cells import lru as lru
from rnnjax._src.lru_cells import rg_lru as rg_lru
from rnnjax._src.lru_cells import (
    rg_lru_params_from_recurrentgemma as rg_lru_params_from_recurrentgemma,
)
from rnnjax._src.lstm_variants import LayerNormLSTMParams as LayerNormLSTMParams
from rnnjax._src.lstm_variants import PeepholeLSTMParams as PeepholeLSTMParams
from rnnjax._src.lstm_variants import layer_norm_lstm as layer_norm_lstm
from rnnjax._src.min_cells import MinRNNParams as MinRNNParams
from rnnjax._src.min_cells import min_gru as min_gru
from rnnjax._src.min_cells import min_lstm as min_lstm
from rnnjax._src.newton import NewtonInfo as NewtonInfo
from rnnjax._src.newton_rnn import newton_rnn as newton_rnn
from rnnjax._src.padding import pad_sequences as pad_sequences
from rnnjax._src.settings import ModuleSettings as ModuleSettings
from rnnjax._src.time_sharded import (
    time_sharded_linear_recurrence as time_sharded_linear_recurrence,
)

__version__ = "0.1.0"

__all__ = (
    "AttentionParams",
    "AttentionState",
    "BidirectionalParams",
    "Cell",
    "Decoded",
    "DiagonalJacobian",
    "DiagonalParams",
    "GRUParams",
    "GateSplit",
    "LRUParams",
    "LSTMParams",
    "LSTMState",
    "Layer",
    "LayerNormLSTMParams",
    "LinearScan",
    "MinRNNParams",
    "ModuleSettings",
    "NewtonInfo",
    "PeepholeLSTMParams",
    "Projection",
    "RGLRUParams",
    "SimpleRNNParams",
    "attention",
    "bidirectional",
    "decode",
    "gru",
    "indrnn",
    "layer",
    "layer_norm_lstm",
    "linear_recurrence",
    "lru",
    "lstm",
    "min_gru",
    "min_lstm",
    "newton_rnn",
    "pad_sequences",
    "para_gru",
    "para_lstm",
    "rg_lru",
    "rg_lru_params_from_recurrentgemma",
    "rnn",
    "simple_rnn",
    "stack",
    "tbptt",
    "time_sharded_linear_recurrence",
)

_SUBMODULES = ("interop", "linen", "nnx", "training")


def __getattr__(name: str) -> Any:
    """Loads a submodule on first access (PEP 562)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"rnnjax.{name}")
    raise AttributeError(f"module 'rnnjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted((*globals(), *_SUBMODULES))
