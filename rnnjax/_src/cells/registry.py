"""The one registry of built-in cell kinds, by name: what the Flax modules and both interop
directions (PyTorch, Keras) build cells from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from rnnjax._src.cells.diagonal import DiagonalParams, indrnn, para_gru, para_lstm
from rnnjax._src.cells.elman import SimpleRNNParams, simple_rnn
from rnnjax._src.cells.gru import GRUParams, gru
from rnnjax._src.cells.lru import LRUParams, RGLRUParams, lru, rg_lru
from rnnjax._src.cells.lstm import LayerNormLSTMParams, LSTMParams, layer_norm_lstm, lstm
from rnnjax._src.cells.minimal import MinRNNParams, min_gru, min_lstm
from rnnjax._src.core.contract import Cell


class CellKind(NamedTuple):
    """A built-in cell kind.

    Attributes:
      make: ``(hidden_size, *, initializer="keras", **settings) -> Cell``.
      params_type: the NamedTuple its ``init`` returns.
      module_name: the name of its modules in :mod:`rnnjax.nnx` and :mod:`rnnjax.linen`: the
        sequence module ``module_name`` and the step module ``module_name + "Cell"``, each
        the generic ``RNN``/``Step`` over ``make(features, ...)`` (one line per module).
      settings: the names of its own settings beyond ``hidden_size`` and ``initializer``.
    """

    make: Callable[..., Cell]
    params_type: type[Any]
    module_name: str
    settings: tuple[str, ...] = ()


CELL_KINDS: dict[str, CellKind] = {
    "simple_rnn": CellKind(simple_rnn, SimpleRNNParams, "SimpleRNN", ("activation",)),
    "lstm": CellKind(lstm, LSTMParams, "LSTM", ("peephole",)),
    "gru": CellKind(gru, GRUParams, "GRU", ("reset_after",)),
    "min_gru": CellKind(min_gru, MinRNNParams, "MinGRU"),
    "min_lstm": CellKind(min_lstm, MinRNNParams, "MinLSTM"),
    "layer_norm_lstm": CellKind(
        layer_norm_lstm, LayerNormLSTMParams, "LayerNormLSTM", ("epsilon",)
    ),
    "indrnn": CellKind(indrnn, DiagonalParams, "IndRNN", ("activation",)),
    "para_gru": CellKind(para_gru, DiagonalParams, "ParaGRU"),
    "para_lstm": CellKind(para_lstm, DiagonalParams, "ParaLSTM"),
    "lru": CellKind(lru, LRUParams, "LRU", ("r_min", "r_max", "max_phase")),
    "rg_lru": CellKind(rg_lru, RGLRUParams, "RGLRU"),
}


def make_cell(kind: str, hidden_size: int, **settings: Any) -> Cell:
    """``CELL_KINDS[kind].make(hidden_size, **settings)``, naming the kinds on a bad name."""
    if kind not in CELL_KINDS:
        raise ValueError(f"cell kind must be one of {tuple(CELL_KINDS)}; got {kind!r}")
    return CELL_KINDS[kind].make(hidden_size, **settings)
