"""Flax NNX modules over any rnnjax cell: :class:`RNN` and :class:`Step`, and the named
``SimpleRNN``, ``LSTM``, ``GRU``, ... that build their cell from a kind.

Thin shells: a module owns its parameters, the pytree the cell's ``init`` returns
(:class:`~rnnjax.LSTMParams`, a user's dict, ...), one :class:`flax.nnx.Param` per array, and
calls :func:`rnnjax.layer`'s numerics (:func:`rnnjax.stack` for ``num_layers > 1``,
:func:`rnnjax.bidirectional`) on them, so its output equals the functional call on
``module.params``, bit for bit. ``rnnjax.nnx.RNN(cell, in_features, rngs=...)`` takes any
:class:`~rnnjax.Cell` (built-in, custom, ``rnnjax.attention(...)``), as Flax's ``nnx.RNN``
takes any cell; the named modules are that with ``cell = rnnjax.lstm(features, ...)``, and
take their kind's own settings (``reset_after``, ``r_min``, ...) by keyword, with the
defaults of its factory (read from the registry). The settings may come by name or all at
once as ``settings=rnnjax.ModuleSettings(...)``.

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

The named modules, a pair per kind of the registry (sequence module, step module):

* :class:`SimpleRNN`, :class:`SimpleRNNCell`: :func:`rnnjax.simple_rnn`
* :class:`LSTM`, :class:`LSTMCell`: :func:`rnnjax.lstm`
* :class:`GRU`, :class:`GRUCell`: :func:`rnnjax.gru`
* :class:`LayerNormLSTM`, :class:`LayerNormLSTMCell`: :func:`rnnjax.layer_norm_lstm`
* :class:`IndRNN`, :class:`IndRNNCell`: :func:`rnnjax.indrnn`
* :class:`ParaGRU`, :class:`ParaGRUCell`: :func:`rnnjax.para_gru`
* :class:`ParaLSTM`, :class:`ParaLSTMCell`: :func:`rnnjax.para_lstm`
* :class:`MinGRU`, :class:`MinGRUCell`: :func:`rnnjax.min_gru`
* :class:`MinLSTM`, :class:`MinLSTMCell`: :func:`rnnjax.min_lstm`
* :class:`LRU`, :class:`LRUCell`: :func:`rnnjax.lru`
* :class:`RGLRU`, :class:`RGLRUCell`: :func:`rnnjax.rg_lru`

Step modules, for decoding one token at a time: :class:`Step` over any cell, and the
named step modules (``LSTMCell``, ...), each ``cell(carry, x_t) -> (carry, y_t)`` with
``initialize_carry(input_shape)``. They hold the same params as the
sequence modules (``load_params`` takes either's) and run the cell's own ``step``, so a jitted
or scanned step equals the sequence module's output at that step, bit for bit on CPU. They
follow Flax's cell protocol (:class:`flax.nnx.RNNCellBase`), so :class:`flax.nnx.RNN` runs
them too.
"""

from __future__ import annotations

from typing import ClassVar

from rnnjax._src.modules.nnx import RNN as RNN
from rnnjax._src.modules.nnx import Bidirectional as Bidirectional
from rnnjax._src.modules.nnx import KindRNN, KindStep
from rnnjax._src.modules.nnx import Step as Step

__all__ = (
    "GRU",
    "LRU",
    "LSTM",
    "RGLRU",
    "RNN",
    "Bidirectional",
    "GRUCell",
    "IndRNN",
    "IndRNNCell",
    "LRUCell",
    "LSTMCell",
    "LayerNormLSTM",
    "LayerNormLSTMCell",
    "MinGRU",
    "MinGRUCell",
    "MinLSTM",
    "MinLSTMCell",
    "ParaGRU",
    "ParaGRUCell",
    "ParaLSTM",
    "ParaLSTMCell",
    "RGLRUCell",
    "SimpleRNN",
    "SimpleRNNCell",
    "Step",
)


# --- The named modules: one line per cell kind of the registry --------------------------------


class SimpleRNN(KindRNN):
    """Keras's ``SimpleRNN``: :class:`RNN` over ``rnnjax.simple_rnn(features, activation)``.

    Args:
      in_features: input size.
      features: hidden size ``H``.
      activation: default ``jnp.tanh``.
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"`` (docs/guides/cells.md).
      rngs: the ``params`` and ``dropout`` streams, as :class:`RNN`.
      deterministic: the initial mode, as :class:`RNN`.
      settings: all the module settings as one :class:`rnnjax.ModuleSettings`, or
      **by_name: each by name, as :class:`RNN` takes them.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> rnn = rnnjax.nnx.SimpleRNN(3, 8, rngs=nnx.Rngs(0))
      >>> rnn(jnp.ones((2, 5, 3))).shape                  # the last output
      (2, 8)
    """

    kind: ClassVar[str] = "simple_rnn"


class LSTM(KindRNN):
    """Keras's ``LSTM``: :class:`RNN` over ``rnnjax.lstm(features)`` (gates i, f, g, o;
    params :class:`~rnnjax.LSTMParams`).

    Args:
      in_features: input size.
      features: hidden size ``H``.
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"``.
      peephole: ``True`` for the peephole LSTM (``rnnjax.lstm(features, peephole=True)``).
      rngs: the ``params`` and ``dropout`` streams, as :class:`RNN`.
      deterministic: the initial mode, as :class:`RNN`.
      settings: all the module settings as one :class:`rnnjax.ModuleSettings`, or
      **by_name: each by name, as :class:`RNN` takes them.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.nnx
      >>> from flax import nnx
      >>> lstm = rnnjax.nnx.LSTM(3, 8, return_sequences=True, rngs=nnx.Rngs(0))
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 2])
      >>> lstm(xs, seq_lengths=lengths).shape
      (2, 5, 8)
      >>> _, ys = rnnjax.rnn(rnnjax.lstm(8), lstm.params, xs, seq_lengths=lengths)
      >>> bool((lstm(xs, seq_lengths=lengths) == ys).all())   # the functional call
      True
    """

    kind: ClassVar[str] = "lstm"


class GRU(KindRNN):
    """Keras's ``GRU``: :class:`RNN` over ``rnnjax.gru(features, reset_after)`` (gates r, z, n;
    params :class:`~rnnjax.GRUParams`).

    Args:
      in_features: input size.
      features: hidden size ``H``.
      reset_after: ``True`` (Keras's default, PyTorch's and cuDNN's form) or ``False``.
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"``.
      rngs: the ``params`` and ``dropout`` streams, as :class:`RNN`.
      deterministic: the initial mode, as :class:`RNN`.
      settings: all the module settings as one :class:`rnnjax.ModuleSettings`, or
      **by_name: each by name, as :class:`RNN` takes them.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> gru = rnnjax.nnx.GRU(3, 8, return_state=True, rngs=nnx.Rngs(0))
      >>> last, h = gru(jnp.ones((2, 5, 3)))
      >>> bool((last == h).all())
      True
    """

    kind: ClassVar[str] = "gru"


class LayerNormLSTM(KindRNN):
    """:class:`RNN` over :func:`rnnjax.layer_norm_lstm` (Ba et al. 2016); arguments as
    :class:`LSTM`, plus the cell's ``epsilon``."""

    kind: ClassVar[str] = "layer_norm_lstm"


class IndRNN(KindRNN):
    """:class:`RNN` over :func:`rnnjax.indrnn`: IndRNN (Li et al. 2018),
    ``h' = activation(x W + u * h + b)``. Arguments as :class:`LSTM`; plus the cell's own
    ``activation``."""

    kind: ClassVar[str] = "indrnn"


class ParaGRU(KindRNN):
    """:class:`RNN` over :func:`rnnjax.para_gru`: ParaGRU (Danieli et al. 2026), the GRU with
    diagonal recurrent weights. Arguments as :class:`LSTM`."""

    kind: ClassVar[str] = "para_gru"


class ParaLSTM(KindRNN):
    """:class:`RNN` over :func:`rnnjax.para_lstm`: ParaLSTM (Danieli et al. 2026), a CIFG LSTM
    with diagonal recurrent weights. Arguments as :class:`LSTM`."""

    kind: ClassVar[str] = "para_lstm"


class LRU(KindRNN):
    """:class:`RNN` over :func:`rnnjax.lru`: the linear recurrent unit (Orvieto et al. 2023), run
    in parallel over time. Arguments as :class:`LSTM`; plus the cell's own ``r_min``,
    ``r_max``, ``max_phase``."""

    kind: ClassVar[str] = "lru"


class RGLRU(KindRNN):
    """:class:`RNN` over :func:`rnnjax.rg_lru`: the RG-LRU of Griffin/Hawk (De et al. 2024), run
    in parallel over time. Arguments as :class:`LSTM`."""

    kind: ClassVar[str] = "rg_lru"


class MinGRU(KindRNN):
    """:class:`RNN` over :func:`rnnjax.min_gru`, run in parallel over time; arguments as
    :class:`LSTM` (``recurrent_dropout`` is refused: its gates never read ``h``).

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> deep = rnnjax.nnx.MinGRU(3, 8, num_layers=3, return_sequences=True, rngs=nnx.Rngs(0))
      >>> deep(jnp.ones((2, 50, 3))).shape
      (2, 50, 8)
    """

    kind: ClassVar[str] = "min_gru"


class MinLSTM(KindRNN):
    """:class:`RNN` over :func:`rnnjax.min_lstm`; as :class:`MinGRU`."""

    kind: ClassVar[str] = "min_lstm"


class SimpleRNNCell(KindStep):
    """One step of :class:`SimpleRNN`, ``h' = activation(x W + h U + b)``: a Flax NNX cell.

    Holds the same params as :class:`SimpleRNN` (:class:`~rnnjax.SimpleRNNParams`, same
    initializers), so :meth:`load_params` takes either's; a call runs
    ``rnnjax.simple_rnn(features).step``. Follows Flax's cell protocol
    (:class:`flax.nnx.RNNCellBase`), so it runs inside :class:`flax.nnx.RNN`.

    Args:
      in_features: input size.
      features: hidden size ``H``.
      activation: default ``jnp.tanh``.
      initializer: as :class:`SimpleRNN`.
      dtype: the computation dtype (``None``: ``param_dtype``).
      param_dtype: the params' dtype.
      rngs: the ``params`` stream.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.SimpleRNNCell(3, 8, rngs=nnx.Rngs(0))
      >>> carry = cell.initialize_carry((2, 3))                   # [batch, in_features]
      >>> carry, y = cell(carry, jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)
    """

    kind: ClassVar[str] = "simple_rnn"


class LSTMCell(KindStep):
    """One step of :class:`LSTM`: a Flax NNX cell, carry :class:`~rnnjax.LSTMState` ``(h, c)``.

    Holds the same params as :class:`LSTM` (:class:`~rnnjax.LSTMParams`, gates i, f, g, o,
    same initializers), so :meth:`load_params` takes an ``LSTM``'s params and
    ``rnnjax.interop.from_torch``'s or ``from_keras``'s (one layer, one direction); a call
    runs ``rnnjax.lstm(features).step``, so a jitted or scanned step equals the ``LSTM``'s
    output at that step bit for bit. It follows Flax's cell protocol
    (:class:`flax.nnx.RNNCellBase`: ``__call__(carry, x_t)``, ``initialize_carry``,
    ``num_feature_axes``), so :class:`flax.nnx.RNN` runs it over a sequence. The carry is
    an :class:`~rnnjax.LSTMState`: a plain tuple is refused (Flax's own ``LSTMCell`` orders
    it ``(c, h)``).

    Args:
      in_features: input size.
      features: hidden size ``H``.
      initializer: as :class:`LSTM`.
      dtype: the computation dtype (``None``: ``param_dtype``).
      param_dtype: the params' dtype.
      rngs: the ``params`` stream.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.LSTMCell(3, 32, rngs=nnx.Rngs(0))
      >>> xs = jnp.ones((2, 5, 3))                                # [batch, time, features]
      >>> nnx.RNN(cell)(xs).shape                                 # Flax's own driver
      (2, 5, 32)
      >>> lstm = rnnjax.nnx.LSTM(3, 32, return_sequences=True, rngs=nnx.Rngs(1))
      >>> cell.load_params(lstm.params)                           # interchangeable params
      >>> bool(jnp.allclose(nnx.RNN(cell)(xs), lstm(xs), atol=1e-6))
      True

      Decoding, one token at a time (carry in, one token's embedding in, carry out):

      >>> embed = nnx.Embed(10, 3, rngs=nnx.Rngs(2))
      >>> @nnx.jit
      ... def step(cell, embed, carry, token):
      ...     return cell(carry, embed(token))
      >>> carry, token = cell.initialize_carry((2, 3)), jnp.array([1, 4])
      >>> for _ in range(3):
      ...     carry, y = step(cell, embed, carry, token)
      ...     token = jnp.argmax(y[:, :10], axis=-1)              # a real model: a Dense head
      >>> carry.h.shape, carry.c.shape
      ((2, 32), (2, 32))
    """

    kind: ClassVar[str] = "lstm"


class GRUCell(KindStep):
    """One step of :class:`GRU` (gates r, z, n; params :class:`~rnnjax.GRUParams`): a Flax
    NNX cell; as :class:`LSTMCell`, with carry ``h``.

    Args:
      in_features: input size.
      features: hidden size ``H``.
      reset_after: ``True`` (Keras's default, PyTorch's and cuDNN's form) or ``False``.
      initializer: as :class:`GRU`.
      dtype: the computation dtype (``None``: ``param_dtype``).
      param_dtype: the params' dtype.
      rngs: the ``params`` stream.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.GRUCell(3, 8, reset_after=False, rngs=nnx.Rngs(0))
      >>> carry, ys = nnx.RNN(cell, return_carry=True)(jnp.ones((2, 5, 3)))
      >>> carry.shape, ys.shape
      ((2, 8), (2, 5, 8))
    """

    kind: ClassVar[str] = "gru"


class LayerNormLSTMCell(KindStep):
    """One step of :class:`LayerNormLSTM`; as :class:`LSTMCell`."""

    kind: ClassVar[str] = "layer_norm_lstm"


class MinGRUCell(KindStep):
    """One step of :class:`MinGRU` (params :class:`~rnnjax.MinRNNParams`, carry ``h``): a Flax
    NNX cell for decoding; as :class:`LSTMCell`.

    Args:
      in_features: input size.
      features: hidden size ``H``.
      initializer: as :class:`LSTMCell`.
      dtype: the computation dtype (``None``: ``param_dtype``).
      param_dtype: the params' dtype.
      rngs: the ``params`` stream.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.MinGRUCell(3, 8, rngs=nnx.Rngs(0))
      >>> carry, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)
    """

    kind: ClassVar[str] = "min_gru"


class MinLSTMCell(KindStep):
    """One step of :class:`MinLSTM` (params :class:`~rnnjax.MinRNNParams`, carry ``h``); as
    :class:`MinGRUCell`.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.MinLSTMCell(3, 8, rngs=nnx.Rngs(0))
      >>> carry, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)
    """

    kind: ClassVar[str] = "min_lstm"


class IndRNNCell(KindStep):
    """One step of :class:`IndRNN`; as :class:`LSTMCell`; plus the cell's own ``activation``."""

    kind: ClassVar[str] = "indrnn"


class ParaGRUCell(KindStep):
    """One step of :class:`ParaGRU`; as :class:`LSTMCell`."""

    kind: ClassVar[str] = "para_gru"


class ParaLSTMCell(KindStep):
    """One step of :class:`ParaLSTM`; as :class:`LSTMCell`."""

    kind: ClassVar[str] = "para_lstm"


class LRUCell(KindStep):
    """One step of :class:`LRU`; as :class:`LSTMCell`; plus the cell's own ``r_min``, ``r_max``,
    ``max_phase``."""

    kind: ClassVar[str] = "lru"


class RGLRUCell(KindStep):
    """One step of :class:`RGLRU`; as :class:`LSTMCell`."""

    kind: ClassVar[str] = "rg_lru"
