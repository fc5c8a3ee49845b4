"""Linen step modules: :class:`Step` over any cell and the named kinds' step modules, in
Flax's cell protocol (:class:`flax.linen.RNNCellBase`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.typing import DTypeLike

from rnnjax._src.contract import Carry, Cell
from rnnjax._src.linen_sequence import cell_params
from rnnjax._src.modules_common import Recurrent, kind_cell
from rnnjax._src.registry import CELL_KINDS

Array = jax.Array


class _StepBase(nn.RNNCellBase):
    """What :class:`Step` and the named step modules share: the call and the carry."""

    def recurrent(self) -> Recurrent:
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "param_dtype": self.param_dtype}

    @nn.compact
    def __call__(self, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        """One time step: ``x_t [*batch, features_in]`` to ``(carry, y_t [*batch, features])``."""
        recurrent = self.recurrent()
        if not hasattr(x_t, "shape") or jnp.ndim(x_t) < 1:
            raise ValueError(
                f"{recurrent.where}: x_t must have shape [*batch, features]; got"
                f" {getattr(x_t, 'shape', type(x_t))}"
            )
        params = cell_params(self, recurrent, int(x_t.shape[-1]))
        return recurrent.step(params, carry, x_t)

    @nn.nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Carry:
        """The carry before the first step for inputs of shape ``input_shape`` (``[*batch,
        features_in]``): zeros in ``param_dtype`` (an :class:`~rnnjax.LSTMState` for the LSTM).
        ``rng`` is unused (Flax's signature)."""
        return self.recurrent().initial_carry(tuple(input_shape))

    @property
    def num_feature_axes(self) -> int:
        """Flax's cell protocol: ``x_t`` has one feature axis, the last."""
        return 1


class Step(_StepBase):
    """One time step of any :class:`~rnnjax.Cell`, as a linen cell in Flax's protocol.

    Its variables are those of :class:`~rnnjax.linen.RNN` over the same cell
    (``{"params": {"cell": ...}}``) and a call runs ``cell.step``, so a jitted or scanned
    step equals the sequence module's output at that step bit for bit. It follows
    :class:`flax.linen.RNNCellBase`, so :class:`flax.linen.RNN` runs it over a sequence
    (its params then sit one level down, under the ``RNN``'s own ``"cell"``).

    Attributes:
      cell: an :class:`~rnnjax.Cell`.
      dtype: computation dtype (``None``: ``param_dtype``).
      param_dtype: dtype of the params.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.linen
      >>> from flax import linen as nn
      >>> rnn = nn.RNN(rnnjax.linen.Step(rnnjax.gru(8)))           # Flax's own driver
      >>> xs = jnp.ones((2, 5, 3))
      >>> rnn.apply(rnn.init(jax.random.key(0), xs), xs).shape
      (2, 5, 8)
    """

    cell: Cell
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def recurrent(self) -> Recurrent:
        """The cell and its checked settings."""
        where = f"rnnjax.linen.{type(self).__name__}"
        return Recurrent.make(where, self.cell, self._settings())


class _NamedStep(_StepBase):
    """A step module whose cell is built from a kind of the registry."""

    kind: ClassVar[str]
    features: int
    initializer: str = "keras"
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def recurrent(self) -> Recurrent:
        """The kind's cell and its checked settings."""
        where = f"rnnjax.linen.{type(self).__name__}"
        own = {name: getattr(self, name) for name in CELL_KINDS[self.kind].settings}
        cell, _ = kind_cell(where, self.kind, self.features, self.initializer, own)
        return Recurrent.make(where, cell, self._settings())


class SimpleRNNCell(_NamedStep):
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


class LSTMCell(_NamedStep):
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
    peephole: bool = False


class GRUCell(_NamedStep):
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


class LayerNormLSTMCell(_NamedStep):
    """One step of :class:`LayerNormLSTM`; as :class:`LSTMCell`, plus ``epsilon``."""

    kind: ClassVar[str] = "layer_norm_lstm"
    epsilon: float = 1e-5


class MinGRUCell(_NamedStep):
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


class MinLSTMCell(_NamedStep):
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
