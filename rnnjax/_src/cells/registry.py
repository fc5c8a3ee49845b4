"""The one registry of built-in cell kinds, by name: what the Flax modules and both interop
directions (PyTorch, Keras) build cells from.

A kind is declared once, by its :class:`CellKind` entry: the modules of :mod:`rnnjax.nnx` and
:mod:`rnnjax.linen` read the kind's own settings (names, defaults, annotations) from the
entry, which records them once from the factory's signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from rnnjax._src.cells.diagonal import DiagonalParams, indrnn, para_gru, para_lstm
from rnnjax._src.cells.elman import SimpleRNNParams, simple_rnn
from rnnjax._src.cells.gru import GRUParams, gru
from rnnjax._src.cells.lru import LRUParams, RGLRUParams, lru, rg_lru
from rnnjax._src.cells.lstm import LayerNormLSTMParams, LSTMParams, layer_norm_lstm, lstm
from rnnjax._src.cells.minimal import MinRNNParams, min_gru, min_lstm
from rnnjax._src.core.contract import Cell

# Every factory takes these; the modules take them as their own arguments.
COMMON_SETTINGS = ("hidden_size", "initializer")


class CellKind(NamedTuple):
    """A built-in cell kind.

    Attributes:
      make: ``(hidden_size, *, initializer="keras", **settings) -> Cell``.
      params_type: the NamedTuple its ``init`` returns.
      module_name: the name of its modules in :mod:`rnnjax.nnx` and :mod:`rnnjax.linen`: the
        sequence module ``module_name`` and the step module ``module_name + "Cell"``, each
        the generic ``RNN``/``Step`` over ``make(features, ...)``.
      settings: its own settings beyond ``hidden_size`` and ``initializer``, as the
        parameters of ``make``'s signature (name, default, annotation), in its order.
    """

    make: Callable[..., Cell]
    params_type: type[Any]
    module_name: str
    settings: tuple[inspect.Parameter, ...]

    @property
    def setting_names(self) -> tuple[str, ...]:
        """The names of :attr:`settings`."""
        return tuple(parameter.name for parameter in self.settings)


def cell_kind(make: Callable[..., Cell], params_type: type[Any], module_name: str) -> CellKind:
    """A registry entry; the kind's own settings are read from ``make``'s signature, once."""
    parameters = inspect.signature(make).parameters.values()
    own = tuple(p for p in parameters if p.name not in COMMON_SETTINGS)
    return CellKind(make, params_type, module_name, own)


CELL_KINDS: dict[str, CellKind] = {
    "simple_rnn": cell_kind(simple_rnn, SimpleRNNParams, "SimpleRNN"),
    "lstm": cell_kind(lstm, LSTMParams, "LSTM"),
    "gru": cell_kind(gru, GRUParams, "GRU"),
    "min_gru": cell_kind(min_gru, MinRNNParams, "MinGRU"),
    "min_lstm": cell_kind(min_lstm, MinRNNParams, "MinLSTM"),
    "layer_norm_lstm": cell_kind(layer_norm_lstm, LayerNormLSTMParams, "LayerNormLSTM"),
    "indrnn": cell_kind(indrnn, DiagonalParams, "IndRNN"),
    "para_gru": cell_kind(para_gru, DiagonalParams, "ParaGRU"),
    "para_lstm": cell_kind(para_lstm, DiagonalParams, "ParaLSTM"),
    "lru": cell_kind(lru, LRUParams, "LRU"),
    "rg_lru": cell_kind(rg_lru, RGLRUParams, "RGLRU"),
}


def make_cell(kind: str, hidden_size: int, **settings: Any) -> Cell:
    """``CELL_KINDS[kind].make(hidden_size, **settings)``, naming the kinds on a bad name."""
    if kind not in CELL_KINDS:
        raise ValueError(f"cell kind must be one of {tuple(CELL_KINDS)}; got {kind!r}")
    return CELL_KINDS[kind].make(hidden_size, **settings)
