"""rnnjax: recurrent neural networks as pure JAX functions: Elman RNN, LSTM (peephole,
layer-normalised), GRU, minGRU/minLSTM, IndRNN, ParaGRU/ParaLSTM, LRU and RG-LRU cells, your
own cells, and the Flax modules, layers and converters around them.

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
import warnings
from typing import Any

from rnnjax._src.cells.check import CellCheckError as CellCheckError
from rnnjax._src.cells.check import check_cell as check_cell
from rnnjax._src.cells.diagonal import DiagonalParams as DiagonalParams
from rnnjax._src.cells.diagonal import indrnn as indrnn
from rnnjax._src.cells.diagonal import para_gru as para_gru
from rnnjax._src.cells.diagonal import para_lstm as para_lstm
from rnnjax._src.cells.elman import SimpleRNNParams as SimpleRNNParams
from rnnjax._src.cells.elman import simple_rnn as simple_rnn
from rnnjax._src.cells.gru import GRUParams as GRUParams
from rnnjax._src.cells.gru import gru as gru
from rnnjax._src.cells.kit import cell_factory as cell_factory
from rnnjax._src.cells.kit import diagonal_cell as diagonal_cell
from rnnjax._src.cells.kit import diagonal_jacobian_of as diagonal_jacobian_of
from rnnjax._src.cells.kit import gated_cell as gated_cell
from rnnjax._src.cells.kit import linear_scan_cell as linear_scan_cell
from rnnjax._src.cells.lru import LRUParams as LRUParams
from rnnjax._src.cells.lru import RGLRUParams as RGLRUParams
from rnnjax._src.cells.lru import lru as lru
from rnnjax._src.cells.lru import rg_lru as rg_lru
from rnnjax._src.cells.lstm import LayerNormLSTMParams as LayerNormLSTMParams
from rnnjax._src.cells.lstm import LSTMParams as LSTMParams
from rnnjax._src.cells.lstm import LSTMState as LSTMState
from rnnjax._src.cells.lstm import PeepholeLSTMParams as PeepholeLSTMParams
from rnnjax._src.cells.lstm import layer_norm_lstm as layer_norm_lstm
from rnnjax._src.cells.lstm import lstm as lstm
from rnnjax._src.cells.minimal import MinRNNParams as MinRNNParams
from rnnjax._src.cells.minimal import min_gru as min_gru
from rnnjax._src.cells.minimal import min_lstm as min_lstm
from rnnjax._src.core.contract import Cell as Cell
from rnnjax._src.core.contract import DiagonalJacobian as DiagonalJacobian
from rnnjax._src.core.contract import GateSplit as GateSplit
from rnnjax._src.core.contract import Layer as Layer
from rnnjax._src.core.contract import LinearScan as LinearScan
from rnnjax._src.core.contract import Projection as Projection
from rnnjax._src.core.settings import ModuleSettings as ModuleSettings
from rnnjax._src.decoding.attention import AttentionParams as AttentionParams
from rnnjax._src.decoding.attention import AttentionState as AttentionState
from rnnjax._src.decoding.attention import attention as attention
from rnnjax._src.decoding.decode import Decoded as Decoded
from rnnjax._src.decoding.decode import decode as decode
from rnnjax._src.layers.compose import BidirectionalParams as BidirectionalParams
from rnnjax._src.layers.compose import bidirectional as bidirectional
from rnnjax._src.layers.compose import stack as stack
from rnnjax._src.layers.layer import layer as layer
from rnnjax._src.linear.recurrence import linear_recurrence as linear_recurrence
from rnnjax._src.linear.time_sharded import (
    time_sharded_linear_recurrence as time_sharded_linear_recurrence,
)
from rnnjax._src.newton.solver import NewtonInfo as NewtonInfo
from rnnjax._src.scan.chunks import tbptt as tbptt
from rnnjax._src.scan.driver import rnn as rnn
from rnnjax._src.scan.newton_rnn import newton_rnn as newton_rnn
from rnnjax._src.training.padding import pad_sequences as pad_sequences

__version__ = "0.1.0"

__all__ = (
    "AttentionParams",
    "AttentionState",
    "BidirectionalParams",
    "Cell",
    "CellCheckError",
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
    "cell_factory",
    "check_cell",
    "decode",
    "diagonal_cell",
    "diagonal_jacobian_of",
    "gated_cell",
    "gru",
    "indrnn",
    "layer",
    "layer_norm_lstm",
    "linear_recurrence",
    "linear_scan_cell",
    "lru",
    "lstm",
    "min_gru",
    "min_lstm",
    "newton_rnn",
    "pad_sequences",
    "para_gru",
    "para_lstm",
    "rg_lru",
    "rnn",
    "simple_rnn",
    "stack",
    "tbptt",
    "time_sharded_linear_recurrence",
)

_SUBMODULES = ("interop", "linen", "nnx", "training")

# Names that moved (kept for one release, with a DeprecationWarning): name -> new home.
_MOVED = {"rg_lru_params_from_recurrentgemma": "rnnjax.interop"}

# Names that were removed, each answered with what replaced it.
_REMOVED = {
    "rnn_with_resets": (
        "rnnjax.rnn_with_resets was removed: use rnnjax.rnn(cell, params, xs, resets=resets)"
    ),
    "hidden_state": (
        "rnnjax.hidden_state was removed: use cell.output(carry) (the cell's hidden state)"
    ),
}


def __getattr__(name: str) -> Any:
    """Loads a submodule on first access (PEP 562); points moved and removed names to what
    replaced them."""
    if name in _SUBMODULES:
        return importlib.import_module(f"rnnjax.{name}")
    if name in _MOVED:
        home = _MOVED[name]
        warnings.warn(
            f"rnnjax.{name} moved to {home}.{name}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(home), name)
    if name in _REMOVED:
        raise AttributeError(_REMOVED[name])
    raise AttributeError(f"module 'rnnjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted((*globals(), *_SUBMODULES))
