"""Flax NNX modules over any rnnjax cell: :class:`RNN` and :class:`Step`, and the named
``SimpleRNN``, ``LSTM``, ``GRU``, ... that build their cell from a kind.

Thin shells: a module owns its parameters, the pytree the cell's ``init`` returns
(:class:`~rnnjax.LSTMParams`, a user's dict, ...), one :class:`flax.nnx.Param` per array, and
calls :func:`rnnjax.layer`'s numerics (:func:`rnnjax.stack` for ``num_layers > 1``,
:func:`rnnjax.bidirectional`) on them, so its output equals the functional call on
``module.params``, bit for bit. ``rnnjax.nnx.RNN(cell, in_features, rngs=...)`` takes any
:class:`~rnnjax.Cell` (built-in, custom, ``rnnjax.attention(...)``), as Flax's ``nnx.RNN``
takes any cell; the named modules are that with ``cell = rnnjax.lstm(features, ...)``.

What a call returns is what Keras returns:

* ``return_sequences=False`` (default): the last output ``[*batch, features]``: the top
  layer's final ``h``, which under ``seq_lengths`` is each sequence's output at its last valid
  step (and the initial ``h`` for a sequence of length 0). With ``go_backwards=True`` it is
  the output after reading step 0.
* ``return_sequences=True``: all outputs ``[*batch, time, features]``. With
  ``go_backwards=True`` they come in processing order (Keras's order): entry ``k`` of sequence
  ``b`` is the output computed at position ``len[b] - 1 - k``, zeros for ``k >= len[b]``;
  without ``seq_lengths`` that is the reversed layer's outputs flipped in time, which equals
  a forward run over the flipped sequence (``rnnjax.interop.from_keras``).
* ``return_state=True``: the pair ``(outputs, state)`` with ``state`` the final carry
  (:class:`~rnnjax.LSTMState` ``(h, c)`` for the LSTM, ``h`` otherwise; a tuple with one per
  layer for ``num_layers > 1``; a ``(forward, backward)`` pair for ``Bidirectional``), which
  a later call takes back as ``initial_carry``.

Training mode follows NNX: dropout is on while ``deterministic`` is False (the default, as
for :class:`flax.nnx.Dropout`); ``model.eval()`` turns it off and ``model.train()`` back on,
and a call's ``deterministic=`` overrides both. Masks are drawn from the ``dropout`` stream
of the ``rngs`` given at construction (or from ``rngs=`` of the call: an
:class:`~flax.nnx.Rngs`, a stream, or a key).

Functional and converted params load with :meth:`load_params`, e.g. the params of
``rnnjax.interop.from_torch`` or ``from_keras``.

Step modules, for decoding one token at a time: :class:`Step` over any cell, and
:class:`SimpleRNNCell`, :class:`LSTMCell`, :class:`GRUCell`, :class:`MinGRUCell`,
:class:`MinLSTMCell`, each ``cell(carry, x_t) -> (carry, y_t)`` with
``initialize_carry(input_shape)``. They hold the same params as the
sequence modules (``load_params`` takes either's) and run the cell's own ``step``, so a jitted
or scanned step equals the sequence module's output at that step, bit for bit on CPU. They
follow Flax's cell protocol (:class:`flax.nnx.RNNCellBase`), so :class:`flax.nnx.RNN` runs
them too.
"""

from rnnjax._src.nnx_sequence import GRU as GRU
from rnnjax._src.nnx_sequence import LSTM as LSTM
from rnnjax._src.nnx_sequence import RNN as RNN
from rnnjax._src.nnx_sequence import Bidirectional as Bidirectional
from rnnjax._src.nnx_sequence import LayerNormLSTM as LayerNormLSTM
from rnnjax._src.nnx_sequence import MinGRU as MinGRU
from rnnjax._src.nnx_sequence import MinLSTM as MinLSTM
from rnnjax._src.nnx_sequence import SimpleRNN as SimpleRNN
from rnnjax._src.nnx_step import GRUCell as GRUCell
from rnnjax._src.nnx_step import LayerNormLSTMCell as LayerNormLSTMCell
from rnnjax._src.nnx_step import LSTMCell as LSTMCell
from rnnjax._src.nnx_step import MinGRUCell as MinGRUCell
from rnnjax._src.nnx_step import MinLSTMCell as MinLSTMCell
from rnnjax._src.nnx_step import SimpleRNNCell as SimpleRNNCell
from rnnjax._src.nnx_step import Step as Step

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
)
