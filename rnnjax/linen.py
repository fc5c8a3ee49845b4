"""Flax linen modules over rnnjax's layers (``SimpleRNN``, ``LSTM``, ``GRU``, ...) and cells.

Thin shells: a module's ``params`` collection holds the same NamedTuples the cells' ``init``
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

Step modules, for decoding one token at a time: :class:`SimpleRNNCell`, :class:`LSTMCell`,
:class:`GRUCell`, :class:`MinGRUCell`, :class:`MinLSTMCell`, each ``cell.apply(variables,
carry, x_t) -> (carry, y_t)`` with ``initialize_carry(rng, input_shape)``. Their variables
are the sequence modules' (``{"params": {"cell": ...}}``) and a call runs the cell's own
``step``, so a jitted or scanned step equals the sequence module's output at that step, bit
for bit on CPU. They follow Flax's cell protocol (:class:`flax.linen.RNNCellBase`), so
:class:`flax.linen.RNN` runs them too (their params then sit under the ``RNN``'s ``"cell"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.typing import DTypeLike

from rnnjax._src.compose import BidirectionalParams, check_merge
from rnnjax._src.contract import Carry, Params
from rnnjax._src.modules_common import RecurrentOptions, bidirectional_call
from rnnjax._src.registry import CELL_KINDS

Array = jax.Array

__all__ = (
    "GRU",
    "LSTM",
    "Bidirectional",
    "GRUCell",
    "LSTMCell",
    "MinGRU",
    "MinGRUCell",
    "MinLSTM",
    "MinLSTMCell",
    "SimpleRNN",
    "SimpleRNNCell",
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


def _deterministic(module: nn.Module, uses_key: bool, deterministic: bool | None) -> bool:
    if not uses_key:  # nothing random: the flag changes nothing
        return True
    return bool(nn.merge_param("deterministic", module.deterministic, deterministic))


def _options(module: nn.Module) -> RecurrentOptions:
    """A sequence or step module's settings (its dataclass fields that
    :class:`RecurrentOptions` has, and its cell kind's own) as the shared helper takes them."""
    kind: str = module.kind
    own = {f.name for f in dataclasses.fields(module)}
    shared = [f.name for f in dataclasses.fields(RecurrentOptions) if f.name in own]
    settings = CELL_KINDS[kind].settings
    return RecurrentOptions(
        kind,
        cell_settings=tuple((name, getattr(module, name)) for name in settings),
        **{name: getattr(module, name) for name in shared},
    )


def _cell_params(module: nn.Module, options: RecurrentOptions, input_size: int) -> Params:
    """The module's ``"cell"`` params: made by ``options.init`` at ``init``, and afterwards
    read as they are, so inputs of the wrong width meet rnnjax's named error (the cell's
    check) rather than Flax's complaint about the initializer's shape."""
    if module.has_variable("params", "cell"):
        return module.get_variable("params", "cell")
    return module.param("cell", lambda key: options.init(key, input_size))


class _Recurrent(nn.Module):
    """What SimpleRNN, LSTM and GRU share; see :class:`LSTM`."""

    kind: ClassVar[str]
    features: int
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    num_layers: int = 1
    stack_dropout: float = 0.0
    unroll: int | bool = 1
    remat: bool | Literal["segments"] = False
    initializer: str = "keras"
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    deterministic: bool | None = None
    fused_backward: bool | None = None  # deprecated, no effect
    hoist_projection: bool | None = None

    def options(self) -> RecurrentOptions:
        """The settings as the shared helper takes them."""
        return _options(self)

    @nn.compact
    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        deterministic: bool | None = None,
    ) -> Any:
        """Runs over ``xs [*batch, time, features_in]``; returns what Keras returns."""
        options = self.options()
        params = _cell_params(self, options, jnp.shape(xs)[-1])
        deterministic = _deterministic(self, options.uses_key, deterministic)
        key = None if deterministic else self.make_rng("dropout")
        return options(
            params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=deterministic,
        )


class SimpleRNN(_Recurrent):
    """Keras's ``SimpleRNN`` as a linen module: ``h' = activation(x W + h U + b)``.

    Attributes:
      features: hidden size ``H``.
      return_sequences, return_state, go_backwards: as Keras (module docstring).
      dropout: Keras's input dropout rate, one mask per sequence fixed over time.
      recurrent_dropout: Keras's recurrent dropout rate, on ``h`` where it enters ``U``.
      num_layers: layers stacked (PyTorch's ``num_layers``), each ``features`` wide.
      stack_dropout: dropout between stacked layers (PyTorch's ``dropout``).
      unroll, remat, fused_backward, hoist_projection: as :func:`rnnjax.layer`.
      initializer: ``"keras"``, ``"torch"`` or ``"flax"`` (see docs/guides/cells.md).
      dtype: computation dtype (``rnnjax.layer``'s ``compute_dtype``); ``None`` computes in
        ``param_dtype``.
      param_dtype: dtype of the params.
      deterministic: ``False`` turns dropout on (or pass it to the call).
      activation: default ``jnp.tanh``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> rnn = rnnjax.linen.SimpleRNN(8)
      >>> xs = jnp.ones((2, 5, 3))
      >>> variables = rnn.init(jax.random.key(0), xs)
      >>> rnn.apply(variables, xs).shape
      (2, 8)
    """

    kind: ClassVar[str] = "simple_rnn"
    activation: Callable[[Array], Array] = jnp.tanh


class LSTM(_Recurrent):
    """Keras's ``LSTM`` as a linen module (gates i, f, g, o; params :class:`~rnnjax.LSTMParams`).

    Attributes: as :class:`SimpleRNN` (no ``activation``).

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


class GRU(_Recurrent):
    """Keras's ``GRU`` as a linen module (gates r, z, n; params :class:`~rnnjax.GRUParams`).

    Attributes: as :class:`SimpleRNN` (no ``activation``), and ``reset_after``: ``True``
    (Keras's default, PyTorch's and cuDNN's form) or ``False``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> gru = rnnjax.linen.GRU(8, return_state=True)
      >>> xs = jnp.ones((2, 5, 3))
      >>> last, h = gru.apply(gru.init(jax.random.key(0), xs), xs)
      >>> bool((last == h).all())
      True
    """

    kind: ClassVar[str] = "gru"
    reset_after: bool = True


class MinGRU(_Recurrent):
    """:func:`rnnjax.min_gru` as a linen module, run in parallel over time.

    Attributes: as :class:`LSTM`; ``recurrent_dropout`` is refused (its gates never read ``h``).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> model = rnnjax.linen.MinGRU(8, num_layers=2)
      >>> xs = jnp.ones((2, 50, 3))
      >>> model.apply(model.init(jax.random.key(0), xs), xs).shape
      (2, 8)
    """

    kind: ClassVar[str] = "min_gru"


class MinLSTM(_Recurrent):
    """:func:`rnnjax.min_lstm` as a linen module; as :class:`MinGRU`."""

    kind: ClassVar[str] = "min_lstm"


class Bidirectional(nn.Module):
    """Keras's ``Bidirectional``: the wrapped layer forward, a copy with its own params backward.

    The backward direction has the wrapped layer's settings with ``go_backwards`` flipped and
    runs through :func:`rnnjax.bidirectional`: under ``seq_lengths`` it reads each sequence's
    valid part from its last valid step back to step 0, outputs at their original positions.
    ``return_sequences``, ``return_state``, the dropout rates and ``deterministic`` are the
    wrapped layer's. Without ``return_sequences`` the output merges each direction's last
    output (forward: at the last valid step; backward: at step 0); the state is the pair
    ``(forward carry, backward carry)``. Params: ``{"forward": ..., "backward": ...}``.

    Attributes:
      layer: a :class:`SimpleRNN`, :class:`LSTM` or :class:`GRU` (its settings only are used).
      merge: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or ``"none"`` (a pair).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> bi = rnnjax.linen.Bidirectional(rnnjax.linen.GRU(8, return_sequences=True))
      >>> xs = jnp.ones((2, 5, 3))
      >>> bi.apply(bi.init(jax.random.key(0), xs), xs, seq_lengths=jnp.array([5, 3])).shape
      (2, 5, 16)
    """

    layer: _Recurrent
    merge: str = "concat"

    @nn.compact
    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: tuple[Carry, Carry] | None = None,
        deterministic: bool | None = None,
    ) -> Any:
        """Runs both directions over ``xs [*batch, time, features_in]``."""
        check_merge("Bidirectional", self.merge)
        forward = self.layer.options()
        backward = dataclasses.replace(forward, go_backwards=not forward.go_backwards)
        size = jnp.shape(xs)[-1]
        params = BidirectionalParams(
            self.param("forward", lambda key: forward.init(key, size)),
            self.param("backward", lambda key: backward.init(key, size)),
        )
        deterministic = _deterministic(self.layer, forward.uses_key, deterministic)
        key = None if deterministic else self.make_rng("dropout")
        return bidirectional_call(
            forward,
            backward,
            self.merge,
            params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=deterministic,
        )


# --- Step modules: one time step, Flax's cell protocol -------------------------------------


class _Step(nn.RNNCellBase):
    """What the step modules share; see :class:`LSTMCell`."""

    kind: ClassVar[str]
    features: int
    initializer: str = "keras"
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        """One time step: ``x_t [*batch, features_in]`` to ``(carry, y_t [*batch, features])``."""
        options = _options(self)
        params = _cell_params(self, options, jnp.shape(x_t)[-1])
        return options.step(params, carry, x_t, where=f"rnnjax.linen.{type(self).__name__}")

    @nn.nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Carry:
        """The carry before the first step for inputs of shape ``input_shape`` (``[*batch,
        features_in]``): zeros in ``param_dtype`` (an :class:`~rnnjax.LSTMState` for the LSTM).
        ``rng`` is unused (Flax's signature)."""
        return _options(self).initial_carry(tuple(input_shape))

    @property
    def num_feature_axes(self) -> int:
        """Flax's cell protocol: ``x_t`` has one feature axis, the last."""
        return 1


class SimpleRNNCell(_Step):
    """One step of :class:`SimpleRNN`, ``h' = activation(x W + h U + b)``: a Flax linen cell.

    Holds the same params as :class:`SimpleRNN` (``{"cell": SimpleRNNParams(...)}``, same
    initializers), so the variables of either apply to the other; a call runs
    ``rnnjax.simple_rnn(features).step``. Follows Flax's cell protocol
    (:class:`flax.linen.RNNCellBase`), so it runs inside :class:`flax.linen.RNN`.

    Attributes:
      features: hidden size ``H``.
      initializer, dtype, param_dtype: as :class:`SimpleRNN`.
      activation: default ``jnp.tanh``.

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
    activation: Callable[[Array], Array] = jnp.tanh


class LSTMCell(_Step):
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
      initializer, dtype, param_dtype: as :class:`LSTM`.

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


class GRUCell(_Step):
    """One step of :class:`GRU` (gates r, z, n; params :class:`~rnnjax.GRUParams`): a Flax
    linen cell; as :class:`LSTMCell`, with carry ``h``.

    Attributes:
      features: hidden size ``H``.
      initializer, dtype, param_dtype: as :class:`GRU`.
      reset_after: ``True`` (Keras's default, PyTorch's and cuDNN's form) or ``False``.

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
    reset_after: bool = True


class MinGRUCell(_Step):
    """One step of :class:`MinGRU` (params :class:`~rnnjax.MinRNNParams`, carry ``h``): a Flax
    linen cell for decoding; as :class:`LSTMCell`.

    Attributes:
      features, initializer, dtype, param_dtype: as :class:`LSTMCell`.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> cell, x = rnnjax.linen.MinGRUCell(8), jnp.ones((2, 3))
      >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> carry, y = cell.apply(cell.init(jax.random.key(1), carry, x), carry, x)
      >>> y.shape
      (2, 8)
    """

    kind: ClassVar[str] = "min_gru"


class MinLSTMCell(_Step):
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
