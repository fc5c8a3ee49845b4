"""Flax linen modules over any rnnjax cell: :class:`RNN` and :class:`Step`, and the named
``SimpleRNN``, ``LSTM``, ``GRU``, ... that build their cell from a kind.

``rnnjax.linen.RNN(cell)`` takes any :class:`~rnnjax.Cell`, as Flax's ``nn.RNN`` takes any
cell; ``rnnjax.linen.LSTM(32)`` is that with ``cell = rnnjax.lstm(32)``. The attributes
beyond the cell are the fields of :class:`rnnjax.ModuleSettings` (keyword-only), plus
``deterministic``.

Thin shells: a module's ``params`` collection holds the pytree the cell's ``init``
returns (``{"cell": LSTMParams(...)}``; ``{"forward": ..., "backward": ...}`` for
``Bidirectional``; a tuple of NamedTuples for ``num_layers > 1``), and a call runs
:func:`rnnjax.layer` (:func:`rnnjax.stack`, :func:`rnnjax.bidirectional`) on them, so its
output equals the functional call on those params, bit for bit. The input size is found at
``init`` from ``xs``.

A call returns what Keras returns, exactly as :mod:`rnnjax.nnx` describes: the last output
(each sequence's output at its last valid step under ``seq_lengths``; the output after step 0
with ``go_backwards``), or with ``return_sequences=True`` all outputs (in processing order
with ``go_backwards``: entry ``k`` of sequence ``b`` is the output at position
``len[b] - 1 - k``, zeros for ``k >= len[b]``), and with ``return_state=True`` the pair
``(outputs, final_carry)``.

Randomness the linen way: dropout is on when ``deterministic=False`` (a module attribute or
a call argument, exactly one of them, as for :class:`flax.linen.Dropout`; only needed when
some dropout rate is positive) and draws its masks from the ``'dropout'`` rng:
``model.apply(variables, xs, rngs={"dropout": key})``.

Functional and converted params (``rnnjax.interop.from_torch``, ``from_keras``) load by
building the variables: ``{"params": {"cell": params}}`` (:func:`variables_from`).

Step modules, for decoding one token at a time: :class:`Step` over any cell, and
:class:`SimpleRNNCell`, :class:`LSTMCell`, :class:`GRUCell`, :class:`MinGRUCell`,
:class:`MinLSTMCell`, each ``cell.apply(variables, carry, x_t) -> (carry, y_t)`` with
``initialize_carry(rng, input_shape)``. Their variables are the sequence modules' (``{"params":
{"cell": ...}}``) and a call runs the cell's own ``step``, so a jitted or scanned step equals
the sequence module's output at that step, bit for bit on CPU. They follow Flax's cell protocol
(:class:`flax.linen.RNNCellBase`), so :class:`flax.linen.RNN` runs them too (their params then
sit under the ``RNN``'s ``"cell"``).
"""

from __future__ import annotations

from typing import Any

from rnnjax._src.compose import BidirectionalParams
from rnnjax._src.contract import Params
from rnnjax._src.linen_sequence import GRU as GRU
from rnnjax._src.linen_sequence import LSTM as LSTM
from rnnjax._src.linen_sequence import RNN as RNN
from rnnjax._src.linen_sequence import Bidirectional as Bidirectional
from rnnjax._src.linen_sequence import LayerNormLSTM as LayerNormLSTM
from rnnjax._src.linen_sequence import MinGRU as MinGRU
from rnnjax._src.linen_sequence import MinLSTM as MinLSTM
from rnnjax._src.linen_sequence import SimpleRNN as SimpleRNN
from rnnjax._src.linen_step import GRUCell as GRUCell
from rnnjax._src.linen_step import LayerNormLSTMCell as LayerNormLSTMCell
from rnnjax._src.linen_step import LSTMCell as LSTMCell
from rnnjax._src.linen_step import MinGRUCell as MinGRUCell
from rnnjax._src.linen_step import MinLSTMCell as MinLSTMCell
from rnnjax._src.linen_step import SimpleRNNCell as SimpleRNNCell
from rnnjax._src.linen_step import Step as Step

__all__ = (
    "GRU",
    "LSTM",
    "RNN",
    "Bidirectional",
    "GRUCell",
    "LSTMCell",
    "LayerNormLSTM",
    "LayerNormLSTMCell",
    "MinGRU",
    "MinGRUCell",
    "MinLSTM",
    "MinLSTMCell",
    "SimpleRNN",
    "SimpleRNNCell",
    "Step",
    "variables_from",
)


def variables_from(params: Params) -> dict[str, Any]:
    """Linen variables holding functional or converted ``params``.

    A cell's NamedTuple, or a tuple of them for ``num_layers > 1``, gives a
    :class:`SimpleRNN`'s, :class:`LSTM`'s or :class:`GRU`'s variables; a
    :class:`~rnnjax.BidirectionalParams` gives a :class:`Bidirectional`'s (wrap the
    ``(forward, backward)`` pair of ``rnnjax.interop.from_keras`` in it).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.linen
      >>> params = rnnjax.gru(8).init(jax.random.key(0), 3)
      >>> rnnjax.linen.GRU(8).apply(rnnjax.linen.variables_from(params), jnp.ones((2, 5, 3))).shape
      (2, 8)
    """
    if isinstance(params, BidirectionalParams):
        return {"params": {"forward": params.forward, "backward": params.backward}}
    return {"params": {"cell": params}}
