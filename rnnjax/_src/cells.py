"""Recurrent cells as bundles of pure functions: the vanilla RNN, the LSTM and the GRU.

A :class:`Cell` holds ``init``, ``initial_carry`` and ``step`` (the textbook one-step update,
with ``lax.scan``'s signature once ``params`` is bound), and the split of ``step`` that the
scan driver uses for speed: ``project`` (the input projection ``x @ kernel + bias``, which can
run for all time steps at once) and ``projected_step`` (the recurrent part of one step).
``step`` is ``projected_step`` applied to ``project(x)``, so both paths share every equation.
The built-in cells split ``projected_step`` once more, for the fused backward pass
(``rnnjax.rnn(..., fused_backward=True)``): ``recurrent`` (the matmul ``h @ recurrent_kernel``),
``combine`` (the projections joined into the pre-activations ``z``) and ``gates`` (everything
elementwise after that).

Matmuls with low-precision weights (bfloat16, float16) accumulate and return float32
(``preferred_element_type``), so the gates and the state after them run in float32: the
hardware's fast low-precision matmul, without rounding the gates.

Weights follow Keras's layout: ``kernel [input_size, gates * hidden]``, ``recurrent_kernel
[hidden, gates * hidden]``, ``bias [gates * hidden]``, gates side by side in the order each
cell's docstring gives.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.initializers import INITIALIZERS, init_weights

Array = jax.Array
Params = Any
"""A cell's parameters: one of the ``*Params`` NamedTuples below (any pytree for a custom cell)."""
Carry = Any
"""A cell's recurrent state: an array ``[*batch, hidden]``, or :class:`LSTMState` for the LSTM."""
BatchShape = int | Sequence[int]


class SimpleRNNParams(NamedTuple):
    """Parameters of :func:`simple_rnn`.

    Attributes:
      kernel: ``[input_size, hidden]``.
      recurrent_kernel: ``[hidden, hidden]``.
      bias: ``[hidden]``.
    """

    kernel: Array
    recurrent_kernel: Array
    bias: Array


class LSTMParams(NamedTuple):
    """Parameters of :func:`lstm`; gates in the order i, f, g, o (as Keras and PyTorch).

    Attributes:
      kernel: ``[input_size, 4 * hidden]``.
      recurrent_kernel: ``[hidden, 4 * hidden]``.
      bias: ``[4 * hidden]`` (PyTorch's ``b_ih + b_hh``).
    """

    kernel: Array
    recurrent_kernel: Array
    bias: Array


class GRUParams(NamedTuple):
    """Parameters of :func:`gru`; gates in the order r, z, n (as PyTorch and cuDNN).

    Attributes:
      kernel: ``[input_size, 3 * hidden]``.
      recurrent_kernel: ``[hidden, 3 * hidden]``.
      bias: ``[3 * hidden]``, the input bias (PyTorch's ``b_ih``).
      recurrent_bias: ``[3 * hidden]``, the recurrent bias (PyTorch's ``b_hh``) with
        ``reset_after=True``; ``None`` with ``reset_after=False``, where one bias is all the
        equations can tell apart.
    """

    kernel: Array
    recurrent_kernel: Array
    bias: Array
    recurrent_bias: Array | None


class LSTMState(NamedTuple):
    """The LSTM's carry: hidden state ``h`` and cell state ``c``, each ``[*batch, hidden]``."""

    h: Array
    c: Array


class Cell(NamedTuple):
    """A recurrent cell: an immutable bundle of pure functions (the optax pattern).

    Attributes:
      init: ``(key, input_size, dtype=jnp.float32) -> params``.
      initial_carry: ``(params, batch_shape, dtype=None) -> carry`` of zeros, in the params'
        dtype unless ``dtype`` is given.
      step: ``(params, carry, x_t) -> (carry, y_t)``: the one-step update, ``x_t [*batch,
        input_size]``, ``y_t [*batch, hidden]``.
      project: ``(params, xs) -> [*, gates * hidden]``: the input projection ``xs @ kernel +
        bias`` for any number of leading axes.
      projected_step: ``(params, carry, projected_t) -> (carry, y_t)``: ``step`` on an input
        already projected; ``step(p, c, x) == projected_step(p, c, project(p, x))``.
      recurrent: ``(params, h) -> [*, gates * hidden]``, the recurrent matmul ``h @
        recurrent_kernel`` (plus the GRU's ``recurrent_bias``); ``None`` where the cell has no
        such split (the GRU with ``reset_after=False``).
      combine: ``(projected, recurrent) -> z``, linear: the pre-activations the gates need
        (their sum for the LSTM and the simple RNN; the GRU keeps the candidate's two parts
        apart). ``None`` with ``recurrent``.
      gates: ``(carry, z) -> (carry, y_t)``, the elementwise rest of the step:
        ``projected_step(p, c, x) == gates(c, combine(x, recurrent(p, h)))`` with ``h`` the
        carry's hidden state (times ``recurrent_mask``). ``None`` with ``recurrent``.

    The built-in cells' ``step`` and ``projected_step`` also take ``recurrent_mask=None``, a
    ``[*batch, hidden]`` array that multiplies ``h`` where it enters the recurrent matmuls
    only (Keras's recurrent dropout; the GRU's ``z * h`` term and the LSTM's ``c`` are left
    alone).
    """

    init: Callable[..., Params]
    initial_carry: Callable[..., Carry]
    step: Callable[..., tuple[Carry, Array]]
    project: Callable[[Params, Array], Array]
    projected_step: Callable[..., tuple[Carry, Array]]
    recurrent: Callable[[Params, Array], Array] | None = None
    combine: Callable[[Array, Array], Array] | None = None
    gates: Callable[[Carry, Array], tuple[Carry, Array]] | None = None


def _check_cell_args(hidden_size: int, initializer: str) -> None:
    if not isinstance(hidden_size, int) or isinstance(hidden_size, bool) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive int; got {hidden_size!r}")
    if initializer not in INITIALIZERS:
        raise ValueError(f"initializer must be one of {INITIALIZERS}; got {initializer!r}")


def _batch_tuple(batch_shape: BatchShape) -> tuple[int, ...]:
    return (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)


def _zeros(params: Params, batch_shape: BatchShape, dtype: DTypeLike | None = None) -> Array:
    hidden = params.recurrent_kernel.shape[0]
    return jnp.zeros((*_batch_tuple(batch_shape), hidden), dtype or params.recurrent_kernel.dtype)


def _add_bias(z: Array, bias: Array) -> Array:
    """``z + bias`` with the broadcast spelled out (fine under ``jax_numpy_rank_promotion``)."""
    return z + bias.reshape((1,) * (z.ndim - 1) + bias.shape)


def matmul(x: Array, weight: Array) -> Array:
    """``x @ weight``; with low-precision weights, ``x`` in their dtype and a float32 result.

    Low precision here is a floating dtype narrower than float32 (bfloat16, float16): the
    operands go to the matmul unit in that dtype and the products accumulate in float32. The
    derivatives' matmuls take operands in that dtype too (their results are rounded to it),
    so the backward pass runs at the same low-precision matmul rate as the forward pass.

    Example:
      >>> import jax.numpy as jnp, rnnjax
      >>> h, weight = jnp.ones((2, 3)), jnp.ones((3, 4), jnp.bfloat16)
      >>> rnnjax.matmul(h, weight).dtype      # bfloat16 operands, float32 accumulation
      dtype('float32')
      >>> rnnjax.matmul(h, weight.astype(jnp.float32)).dtype
      dtype('float32')
    """
    if jnp.finfo(weight.dtype).bits < 32:
        return _low_precision_matmul(x.astype(weight.dtype), weight)
    return x @ weight


@jax.custom_jvp
def _low_precision_matmul(x: Array, weight: Array) -> Array:
    return jnp.matmul(x, weight, preferred_element_type=jnp.float32)


@_low_precision_matmul.defjvp
def _low_precision_matmul_jvp(
    primals: tuple[Array, Array], tangents: tuple[Array, Array]
) -> tuple[Array, Array]:
    # Tangent products in the operands' dtype: JAX transposes them into matmuls whose operands
    # (the output cotangent among them) are all low precision, never a float32 x bfloat16 mix.
    (x, weight), (dx, dweight) = primals, tangents
    tangent = jnp.matmul(dx, weight) + jnp.matmul(x, dweight)
    return _low_precision_matmul(x, weight), tangent.astype(jnp.float32)


def _project(params: Params, xs: Array) -> Array:
    return _add_bias(matmul(xs, params.kernel), params.bias)


def hidden_state(carry: Carry) -> Array:
    """The part of a carry that enters the recurrent matmul: ``h`` (the LSTM's ``carry.h``)."""
    return carry.h if isinstance(carry, LSTMState) else carry


def _from_projected(projected_step: Callable[..., tuple[Carry, Array]]) -> Callable[..., Any]:
    """``step`` from ``projected_step``: the input projection, then the recurrent part."""

    def step(
        params: Params, carry: Carry, x: Array, recurrent_mask: Array | None = None
    ) -> tuple[Carry, Array]:
        return projected_step(params, carry, _project(params, x), recurrent_mask)

    return step


def _masked(h: Array, recurrent_mask: Array | None) -> Array:
    return h if recurrent_mask is None else h * recurrent_mask


def _cell(
    init: Callable[..., Params],
    initial_carry: Callable[..., Carry],
    recurrent: Callable[[Params, Array], Array],
    combine: Callable[[Array, Array], Array],
    gates: Callable[[Carry, Array], tuple[Carry, Array]],
) -> Cell:
    """The cell whose step is ``gates(carry, combine(x @ kernel + bias, recurrent(params, h)))``."""

    def projected_step(
        params: Params, carry: Carry, projected: Array, recurrent_mask: Array | None = None
    ) -> tuple[Carry, Array]:
        h = _masked(hidden_state(carry), recurrent_mask)
        return gates(carry, combine(projected, recurrent(params, h)))

    step = _from_projected(projected_step)
    return Cell(init, initial_carry, step, _project, projected_step, recurrent, combine, gates)


def _recurrent_matmul(params: Params, h: Array) -> Array:
    return matmul(h, params.recurrent_kernel)


@functools.cache
def simple_rnn(
    hidden_size: int,
    activation: Callable[[Array], Array] = jnp.tanh,
    *,
    initializer: str = "keras",
) -> Cell:
    r"""The vanilla (Elman) RNN cell, Keras's ``SimpleRNN`` and PyTorch's ``nn.RNN``.

    .. math:: h_t = \mathrm{activation}(x_t W + h_{t-1} U + b), \qquad y_t = h_t

    Args:
      hidden_size: ``H``, the size of ``h``.
      activation: elementwise nonlinearity (``jnp.tanh``; ``jax.nn.relu`` for PyTorch's
        ``nonlinearity="relu"``).
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"``; see the README.

    Returns:
      A :class:`Cell` whose params are :class:`SimpleRNNParams`. Equal settings return the
      same object, so a cell can be a static argument of ``jax.jit``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.simple_rnn(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, y = cell.step(params, cell.initial_carry(params, 2), jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """
    _check_cell_args(hidden_size, initializer)

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> SimpleRNNParams:
        w = init_weights(initializer, key, input_size, hidden_size, 1, dtype)
        bias = w.bias + w.recurrent_bias if initializer == "torch" else w.bias
        return SimpleRNNParams(w.kernel, w.recurrent_kernel, bias)

    def gates(h: Array, z: Array) -> tuple[Array, Array]:
        h_new = activation(z)
        return h_new, h_new

    return _cell(init, _zeros, _recurrent_matmul, jnp.add, gates)


@functools.cache
def lstm(hidden_size: int, *, initializer: str = "keras") -> Cell:
    r"""The LSTM cell (Hochreiter & Schmidhuber 1997, with forget gate), Keras's and PyTorch's.

    With gates stacked i, f, g, o in ``z = x_t W + h_{t-1} U + b``:

    .. math::
        i = \sigma(z_i),\; f = \sigma(z_f),\; g = \tanh(z_g),\; o = \sigma(z_o), \\
        c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t), \qquad y_t = h_t

    Args:
      hidden_size: ``H``, the size of ``h`` and ``c``.
      initializer: ``"keras"`` (default: Glorot-uniform, orthogonal, forget bias 1),
        ``"torch"`` or ``"flax"``; the forget-gate bias starts at 1 only under ``"keras"``.

    Returns:
      A :class:`Cell` whose params are :class:`LSTMParams` and whose carry is
      :class:`LSTMState`.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.lstm(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params.bias.reshape(4, 4)[1]  # the forget gate's bias
      Array([1., 1., 1., 1.], dtype=float32)
      >>> carry = cell.initial_carry(params, batch_shape=2)
      >>> carry, y = cell.step(params, carry, jnp.ones((2, 3)))
      >>> carry.c.shape, y.shape
      ((2, 4), (2, 4))
    """
    _check_cell_args(hidden_size, initializer)

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> LSTMParams:
        w = init_weights(initializer, key, input_size, hidden_size, 4, dtype)
        if initializer == "keras":
            bias = w.bias.at[hidden_size : 2 * hidden_size].set(1)
        elif initializer == "torch":
            bias = w.bias + w.recurrent_bias
        else:
            bias = w.bias
        return LSTMParams(w.kernel, w.recurrent_kernel, bias)

    def initial_carry(
        params: LSTMParams, batch_shape: BatchShape, dtype: DTypeLike | None = None
    ) -> LSTMState:
        zeros = _zeros(params, batch_shape, dtype)
        return LSTMState(zeros, zeros)

    def gates(carry: LSTMState, z: Array) -> tuple[LSTMState, Array]:
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMState(h, c), h

    return _cell(init, initial_carry, _recurrent_matmul, jnp.add, gates)


@functools.cache
def gru(hidden_size: int, reset_after: bool = True, *, initializer: str = "keras") -> Cell:
    r"""The GRU cell (Cho et al. 2014) in both of its common forms.

    Gates are stacked r, z, n (PyTorch's and cuDNN's order; Keras stores z, r, n). With
    ``reset_after=True`` (PyTorch, cuDNN and the Keras default):

    .. math::
        r = \sigma(x W_r + b_r + h U_r + \beta_r),\;
        z = \sigma(x W_z + b_z + h U_z + \beta_z), \\
        n = \tanh(x W_n + b_n + r \odot (h U_n + \beta_n)), \qquad
        h_t = (1 - z) \odot n + z \odot h_{t-1}

    where ``b`` is ``bias`` and ``beta`` is ``recurrent_bias``. With ``reset_after=False`` (the
    original paper, Keras ``reset_after=False``) the reset gate acts before the matmul and there
    is one bias: ``n = tanh(x W_n + (r * h) U_n + b_n)``.

    Args:
      hidden_size: ``H``, the size of ``h``.
      reset_after: which form, as above.
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"``.

    Returns:
      A :class:`Cell` whose params are :class:`GRUParams`.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.gru(4, reset_after=False)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params.recurrent_bias is None
      True
      >>> carry, y = cell.step(params, cell.initial_carry(params, 2), jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """
    _check_cell_args(hidden_size, initializer)

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> GRUParams:
        w = init_weights(initializer, key, input_size, hidden_size, 3, dtype)
        recurrent_bias = w.recurrent_bias if reset_after else None
        return GRUParams(w.kernel, w.recurrent_kernel, w.bias, recurrent_bias)

    def recurrent(params: GRUParams, h: Array) -> Array:
        assert params.recurrent_bias is not None, "reset_after=True needs recurrent_bias"
        return _add_bias(matmul(h, params.recurrent_kernel), params.recurrent_bias)

    def combine(projected: Array, recurrent: Array) -> Array:
        # [r and z pre-activations (2H), the candidate's input part, its recurrent part]
        x_rz, x_n = jnp.split(projected, [2 * hidden_size], axis=-1)
        h_rz, h_n = jnp.split(recurrent, [2 * hidden_size], axis=-1)
        return jnp.concatenate([x_rz + h_rz, x_n, h_n], axis=-1)

    def gates(h: Array, preactivations: Array) -> tuple[Array, Array]:
        r, z, x_n, h_n = jnp.split(preactivations, 4, axis=-1)
        r, z = jax.nn.sigmoid(r), jax.nn.sigmoid(z)
        n = jnp.tanh(x_n + r * h_n)
        h_new = (1 - z) * n + z * h
        return h_new, h_new

    if reset_after:
        return _cell(init, _zeros, recurrent, combine, gates)

    # reset_after=False: the reset gate acts before the second matmul, so there is no
    # recurrent/gates split (and no fused backward pass).
    def projected_step(
        params: GRUParams, h: Array, projected: Array, recurrent_mask: Array | None = None
    ) -> tuple[Array, Array]:
        x_rz, x_n = jnp.split(projected, [2 * hidden_size], axis=-1)
        u_rz, u_n = jnp.split(params.recurrent_kernel, [2 * hidden_size], axis=-1)
        h_in = _masked(h, recurrent_mask)
        r, z = jnp.split(jax.nn.sigmoid(x_rz + matmul(h_in, u_rz)), 2, axis=-1)
        n = jnp.tanh(x_n + matmul(r * h_in, u_n))
        h_new = (1 - z) * n + z * h
        return h_new, h_new

    return Cell(init, _zeros, _from_projected(projected_step), _project, projected_step)
