"""NNX step modules: :class:`Step` over any cell and the named kinds' step modules,
in Flax's cell protocol (:class:`flax.nnx.RNNCellBase`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from rnnjax._src.contract import Carry, Cell
from rnnjax._src.modules_common import Recurrent, kind_cell
from rnnjax._src.nnx_sequence import _HoldsParams

Array = jax.Array


class Step(_HoldsParams, nnx.RNNCellBase):
    """One time step of any :class:`~rnnjax.Cell`, as an NNX cell in Flax's protocol.

    Holds the params :class:`RNN` over the same cell holds (:meth:`load_params` takes
    either's) and runs ``cell.step``, so a jitted or scanned step equals the sequence
    module's output at that step bit for bit. It follows :class:`flax.nnx.RNNCellBase`
    (``__call__(carry, x_t)``, ``initialize_carry``, ``num_feature_axes``), so
    :class:`flax.nnx.RNN` runs it over a sequence.

    Args:
      cell: an :class:`~rnnjax.Cell`.
      in_features: input size.
      rngs: the ``params`` stream.
      dtype: computation dtype (``None``: ``param_dtype``).
      param_dtype: dtype of the params.

    Example:
      >>> import jax.numpy as jnp, rnnjax, rnnjax.nnx
      >>> from flax import nnx
      >>> step = rnnjax.nnx.Step(rnnjax.gru(8), 3, rngs=nnx.Rngs(0))
      >>> nnx.RNN(step)(jnp.ones((2, 5, 3))).shape                 # Flax's own driver
      (2, 5, 8)
    """

    def __init__(
        self,
        cell: Cell,
        in_features: int,
        *,
        rngs: nnx.Rngs,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
    ) -> None:
        where = f"rnnjax.nnx.{type(self).__name__}"
        settings = {"dtype": dtype, "param_dtype": param_dtype}
        self._hold(Recurrent.make(where, cell, settings), in_features, rngs)

    def __call__(self, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        """One time step: ``x_t [*batch, in_features]`` to ``(carry, y_t [*batch, features])``."""
        return self.recurrent.step(self.params, carry, x_t)

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        carry_init: Callable[..., Array] | None = None,
    ) -> Carry:
        """The carry before the first step for inputs of shape ``input_shape`` (``[*batch,
        in_features]``): zeros in ``param_dtype`` (an :class:`~rnnjax.LSTMState` for the LSTM).

        Flax's signature: ``rngs`` is read only with ``carry_init``, a
        ``jax.nn.initializers`` function ``(key, shape, dtype)`` drawn once per carry array
        from ``rngs`` (an :class:`~flax.nnx.Rngs`' ``carry`` stream, or a stream).
        """
        zeros = self.recurrent.initial_carry(tuple(input_shape), self.params)
        if carry_init is None:
            return zeros
        stream = rngs.carry if isinstance(rngs, nnx.Rngs) else rngs
        if stream is None:
            raise ValueError(
                f"{self.recurrent.where}.initialize_carry: carry_init needs rngs"
                " (an nnx.Rngs with a 'carry' stream, or a stream); got rngs=None"
            )
        return jax.tree.map(lambda leaf: carry_init(stream(), leaf.shape, leaf.dtype), zeros)

    @property
    def num_feature_axes(self) -> int:
        """Flax's cell protocol: ``x_t`` has one feature axis, the last."""
        return 1


class _NamedStep(Step):
    """A step module whose cell is built from a kind of the registry."""

    kind: ClassVar[str]

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        initializer: str = "keras",
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
        **cell_settings: Any,
    ) -> None:
        where = f"rnnjax.nnx.{type(self).__name__}"
        cell, rest = kind_cell(where, self.kind, features, initializer, cell_settings)
        if rest:
            raise TypeError(f"{where}: unknown setting(s) {sorted(rest)}")
        super().__init__(cell, in_features, rngs=rngs, dtype=dtype, param_dtype=param_dtype)


class SimpleRNNCell(_NamedStep):
    """One step of :class:`SimpleRNN`, ``h' = activation(x W + h U + b)``: a Flax NNX cell.

    Holds the same params as :class:`SimpleRNN` (:class:`~rnnjax.SimpleRNNParams`, same
    initializers), so :meth:`load_params` takes either's; a call runs
    ``rnnjax.simple_rnn(features).step``. Follows Flax's cell protocol
    (:class:`flax.nnx.RNNCellBase`), so it runs inside :class:`flax.nnx.RNN`.

    Args:
      in_features: input size.
      features: hidden size ``H``.
      activation: default ``jnp.tanh``.
      initializer, dtype, param_dtype: as :class:`SimpleRNN`.
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

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        activation: Callable[[Array], Array] = jnp.tanh,
        rngs: nnx.Rngs,
        **settings: Any,
    ) -> None:
        super().__init__(in_features, features, activation=activation, rngs=rngs, **settings)


class LSTMCell(_NamedStep):
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
      initializer, dtype, param_dtype: as :class:`LSTM`.
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


class GRUCell(_NamedStep):
    """One step of :class:`GRU` (gates r, z, n; params :class:`~rnnjax.GRUParams`): a Flax
    NNX cell; as :class:`LSTMCell`, with carry ``h``.

    Args:
      in_features: input size.
      features: hidden size ``H``.
      reset_after: ``True`` (Keras's default, PyTorch's and cuDNN's form) or ``False``.
      initializer, dtype, param_dtype: as :class:`GRU`.
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

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        reset_after: bool = True,
        rngs: nnx.Rngs,
        **settings: Any,
    ) -> None:
        super().__init__(in_features, features, reset_after=reset_after, rngs=rngs, **settings)


class LayerNormLSTMCell(_NamedStep):
    """One step of :class:`LayerNormLSTM`; as :class:`LSTMCell`."""

    kind: ClassVar[str] = "layer_norm_lstm"


class MinGRUCell(_NamedStep):
    """One step of :class:`MinGRU` (params :class:`~rnnjax.MinRNNParams`, carry ``h``): a Flax
    NNX cell for decoding; as :class:`LSTMCell`.

    Args:
      in_features, features, initializer, dtype, param_dtype, rngs: as :class:`LSTMCell`.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.MinGRUCell(3, 8, rngs=nnx.Rngs(0))
      >>> carry, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)
    """

    kind: ClassVar[str] = "min_gru"


class MinLSTMCell(_NamedStep):
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
