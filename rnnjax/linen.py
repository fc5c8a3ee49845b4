"""Flax linen modules over any rnnjax cell: :class:`RNN` and :class:`Step`, and the named
``SimpleRNN``, ``LSTM``, ``GRU``, ... that build their cell from a kind.

``rnnjax.linen.RNN(cell)`` takes any :class:`~rnnjax.Cell`, as Flax's ``nn.RNN`` takes any
cell; ``rnnjax.linen.LSTM(32)`` is that with ``cell = rnnjax.lstm(32)``. The attributes
beyond the cell are the fields of :class:`rnnjax.ModuleSettings` (keyword-only), plus
``deterministic`` and ``settings`` (all the settings as one :class:`rnnjax.ModuleSettings`,
instead of by name). A named module's own settings (``reset_after``, ``r_min``, ...) are the
attributes its kind's factory takes, with the same defaults (read from the registry).

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
named step modules (``LSTMCell``, ...), each ``cell.apply(variables, carry, x_t) -> (carry,
y_t)`` with ``initialize_carry(rng, input_shape)``. Their variables are the sequence modules'
(``{"params": {"cell": ...}}``) and a call runs the cell's own ``step``, so a jitted or
scanned step equals the sequence module's output at that step, bit for bit on CPU. They
follow Flax's cell protocol (:class:`flax.linen.RNNCellBase`), so :class:`flax.linen.RNN`
runs them too (their params then sit under the ``RNN``'s ``"cell"``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax

from rnnjax._src.core.contract import Params
from rnnjax._src.layers.compose import BidirectionalParams
from rnnjax._src.modules.linen import RNN as RNN
from rnnjax._src.modules.linen import Bidirectional as Bidirectional
from rnnjax._src.modules.linen import KindRNN, KindStep
from rnnjax._src.modules.linen import Step as Step

Array = jax.Array

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


# --- The named modules: one line per cell kind of the registry --------------------------------


class SimpleRNN(KindRNN):
    """Keras's ``SimpleRNN``: :class:`RNN` over ``rnnjax.simple_rnn(features, activation)``.

    Attributes:
      features: hidden size ``H``.
      activation (Callable[[Array], Array]): default ``jnp.tanh``.
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"`` (docs/guides/cells.md).
      settings: the module settings, as :class:`RNN` takes them (each by name, or all as one
        :class:`rnnjax.ModuleSettings`).
      deterministic: as :class:`RNN`.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> rnn = rnnjax.linen.SimpleRNN(8)
      >>> xs = jnp.ones((2, 5, 3))
      >>> variables = rnn.init(jax.random.key(0), xs)
      >>> rnn.apply(variables, xs).shape
      (2, 8)
    """

    kind: ClassVar[str] = "simple_rnn"


class LSTM(KindRNN):
    """Keras's ``LSTM``: :class:`RNN` over ``rnnjax.lstm(features)`` (gates i, f, g, o;
    params :class:`~rnnjax.LSTMParams`).

    Attributes: ``features``, ``initializer``, the settings and ``deterministic``, as
    :class:`SimpleRNN`; ``peephole``: ``True`` for the peephole LSTM.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.linen
      >>> lstm = rnnjax.linen.LSTM(8, return_sequences=True, dropout=0.2)
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 2])
      >>> variables = lstm.init(jax.random.key(0), xs, deterministic=True)
      >>> ys = lstm.apply(variables, xs, seq_lengths=lengths, deterministic=True)
      >>> _, want = rnnjax.rnn(rnnjax.lstm(8), variables["params"]["cell"], xs, seq_lengths=lengths)
      >>> bool((ys == want).all())
      True
      >>> rngs = {"dropout": jax.random.key(1)}
      >>> ys_train = lstm.apply(variables, xs, deterministic=False, rngs=rngs)
    """

    kind: ClassVar[str] = "lstm"


class GRU(KindRNN):
    """Keras's ``GRU``: :class:`RNN` over ``rnnjax.gru(features, reset_after)`` (gates r, z, n;
    params :class:`~rnnjax.GRUParams`).

    Attributes: as :class:`LSTM`, and ``reset_after``: ``True`` (Keras's default, PyTorch's
    and cuDNN's form) or ``False``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> gru = rnnjax.linen.GRU(8, return_state=True)
      >>> xs = jnp.ones((2, 5, 3))
      >>> last, h = gru.apply(gru.init(jax.random.key(0), xs), xs)
      >>> bool((last == h).all())
      True
    """

    kind: ClassVar[str] = "gru"


class LayerNormLSTM(KindRNN):
    """:class:`RNN` over :func:`rnnjax.layer_norm_lstm` (Ba et al. 2016); attributes as
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
    """:class:`RNN` over :func:`rnnjax.min_gru`, run in parallel over time; attributes as
    :class:`LSTM` (``recurrent_dropout`` is refused: its gates never read ``h``).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> model = rnnjax.linen.MinGRU(8, num_layers=2)
      >>> xs = jnp.ones((2, 50, 3))
      >>> model.apply(model.init(jax.random.key(0), xs), xs).shape
      (2, 8)
    """

    kind: ClassVar[str] = "min_gru"


class MinLSTM(KindRNN):
    """:class:`RNN` over :func:`rnnjax.min_lstm`; as :class:`MinGRU`."""

    kind: ClassVar[str] = "min_lstm"


class SimpleRNNCell(KindStep):
    """One step of :class:`SimpleRNN`, ``h' = activation(x W + h U + b)``: a Flax linen cell.

    Holds the same params as :class:`SimpleRNN` (``{"cell": SimpleRNNParams(...)}``, same
    initializers), so the variables of either apply to the other; a call runs
    ``rnnjax.simple_rnn(features).step``. Follows Flax's cell protocol
    (:class:`flax.linen.RNNCellBase`), so it runs inside :class:`flax.linen.RNN`.

    Attributes:
      features: hidden size ``H``.
      initializer: as :class:`SimpleRNN`.
      dtype: the computation dtype (``None``: ``param_dtype``).
      param_dtype: the params' dtype.
      activation (Callable[[Array], Array]): default ``jnp.tanh``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> cell = rnnjax.linen.SimpleRNNCell(8)
      >>> x = jnp.ones((2, 3))                                    # [batch, features_in]
      >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> variables = cell.init(jax.random.key(1), carry, x)
      >>> carry, y = cell.apply(variables, carry, x)
      >>> y.shape
      (2, 8)
    """

    kind: ClassVar[str] = "simple_rnn"


class LSTMCell(KindStep):
    """One step of :class:`LSTM`: a Flax linen cell, carry :class:`~rnnjax.LSTMState` ``(h, c)``.

    Holds the same params as :class:`LSTM` (``{"cell": LSTMParams(...)}``, gates i, f, g, o,
    same initializers), so the variables of either apply to the other, and
    :func:`variables_from` makes them from ``rnnjax.interop.from_torch``'s or
    ``from_keras``'s params (one layer, one direction). A call runs
    ``rnnjax.lstm(features).step``, so a jitted or scanned step equals the ``LSTM``'s output
    at that step bit for bit. It follows Flax's cell protocol (:class:`flax.linen.RNNCellBase`:
    ``__call__(carry, x_t)``, ``initialize_carry(rng, input_shape)``, ``num_feature_axes``),
    so :class:`flax.linen.RNN` runs it over a sequence; there its params sit one level down,
    under the ``RNN``'s ``"cell"``. The carry is an :class:`~rnnjax.LSTMState`: a plain tuple
    is refused (Flax's own ``LSTMCell`` orders it ``(c, h)``).

    Attributes:
      features: hidden size ``H``.
      initializer: as :class:`LSTM`.
      dtype: the computation dtype (``None``: ``param_dtype``).
      param_dtype: the params' dtype.
      peephole (bool): ``True`` for the peephole LSTM.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> from flax import linen as nn
      >>> xs = jnp.ones((2, 5, 3))                                # [batch, time, features]
      >>> rnn = nn.RNN(rnnjax.linen.LSTMCell(32))                 # Flax's own driver
      >>> variables = rnn.init(jax.random.key(0), xs)
      >>> rnn.apply(variables, xs).shape
      (2, 5, 32)
      >>> lstm = rnnjax.linen.LSTM(32, return_sequences=True)     # the same params
      >>> want = lstm.apply({"params": variables["params"]["cell"]}, xs)
      >>> bool(jnp.allclose(rnn.apply(variables, xs), want, atol=1e-6))
      True

      Decoding, one token at a time (carry in, one token's embedding in, carry out):

      >>> cell, embed = rnnjax.linen.LSTMCell(32), nn.Embed(10, 3)
      >>> cell_vars = {"params": variables["params"]["cell"]}
      >>> embed_vars = embed.init(jax.random.key(1), jnp.array([0]))
      >>> @jax.jit
      ... def step(cell_vars, embed_vars, carry, token):
      ...     return cell.apply(cell_vars, carry, embed.apply(embed_vars, token))
      >>> carry = cell.initialize_carry(jax.random.key(2), (2, 3))
      >>> token = jnp.array([1, 4])
      >>> for _ in range(3):
      ...     carry, y = step(cell_vars, embed_vars, carry, token)
      ...     token = jnp.argmax(y[:, :10], axis=-1)              # a real model: a Dense head
      >>> carry.h.shape, carry.c.shape
      ((2, 32), (2, 32))
    """

    kind: ClassVar[str] = "lstm"


class GRUCell(KindStep):
    """One step of :class:`GRU` (gates r, z, n; params :class:`~rnnjax.GRUParams`): a Flax
    linen cell; as :class:`LSTMCell`, with carry ``h``.

    Attributes:
      features: hidden size ``H``.
      initializer: as :class:`GRU`.
      dtype: the computation dtype (``None``: ``param_dtype``).
      param_dtype: the params' dtype.
      reset_after (bool): ``True`` (Keras's default, PyTorch's and cuDNN's form) or ``False``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> from flax import linen as nn
      >>> rnn = nn.RNN(rnnjax.linen.GRUCell(8, reset_after=False), return_carry=True)
      >>> xs = jnp.ones((2, 5, 3))
      >>> carry, ys = rnn.apply(rnn.init(jax.random.key(0), xs), xs)
      >>> carry.shape, ys.shape
      ((2, 8), (2, 5, 8))
    """

    kind: ClassVar[str] = "gru"


class LayerNormLSTMCell(KindStep):
    """One step of :class:`LayerNormLSTM`; as :class:`LSTMCell`, plus ``epsilon``."""

    kind: ClassVar[str] = "layer_norm_lstm"


class MinGRUCell(KindStep):
    """One step of :class:`MinGRU` (params :class:`~rnnjax.MinRNNParams`, carry ``h``): a Flax
    linen cell for decoding; as :class:`LSTMCell`.

    Attributes:
      features: hidden size ``H``.
      initializer: as :class:`LSTMCell`.
      dtype: the computation dtype (``None``: ``param_dtype``).
      param_dtype: the params' dtype.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> cell, x = rnnjax.linen.MinGRUCell(8), jnp.ones((2, 3))
      >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> carry, y = cell.apply(cell.init(jax.random.key(1), carry, x), carry, x)
      >>> y.shape
      (2, 8)
    """

    kind: ClassVar[str] = "min_gru"


class MinLSTMCell(KindStep):
    """One step of :class:`MinLSTM` (params :class:`~rnnjax.MinRNNParams`, carry ``h``); as
    :class:`MinGRUCell`.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> cell, x = rnnjax.linen.MinLSTMCell(8), jnp.ones((2, 3))
      >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> carry, y = cell.apply(cell.init(jax.random.key(1), carry, x), carry, x)
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
