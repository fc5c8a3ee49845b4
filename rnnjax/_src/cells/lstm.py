"""The LSTM family: the LSTM of Keras and PyTorch (gates i, f, g, o), and the variants whose
gates have weights of their own, the peephole LSTM and the layer-normalised LSTM.

The variants are built from the LSTM's parts and keep every capability of the contract:
their ``gates`` read the params (the peephole vectors; the norms' gains and biases), which
:class:`~rnnjax.GateSplit` allows, so :func:`rnnjax.rnn` differentiates them with its fast
tangent rule as it does the plain LSTM.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.cells.initializers import init_weights
from rnnjax._src.cells.kit import (
    cell_factory,
    gated_cell,
    params_check,
    recurrent_matmul,
    zeros_carry,
)
from rnnjax._src.core.contract import BatchShape, Cell, Params
from rnnjax._src.core.kernels import mark_kernel
from rnnjax._src.core.matmul import add_bias, apply_mask, matmul
from rnnjax._src.core.validate import check_bool

Array = jax.Array


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


class LSTMState(NamedTuple):
    """The LSTM's carry: hidden state ``h`` and cell state ``c``, each ``[*batch, hidden]``."""

    h: Array
    c: Array


@cell_factory
def lstm(hidden_size: int, *, initializer: str = "keras", peephole: bool = False) -> Cell:
    r"""The LSTM cell (Hochreiter & Schmidhuber 1997, with forget gate), Keras's and PyTorch's.

    With gates stacked i, f, g, o in ``z = x_t W + h_{t-1} U + b``:

    .. math::
        i = \sigma(z_i),\; f = \sigma(z_f),\; g = \tanh(z_g),\; o = \sigma(z_o), \\
        c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t), \qquad y_t = h_t

    Args:
      hidden_size: ``H``, the size of ``h`` and ``c``.
      initializer: ``"keras"`` (default: Glorot-uniform, orthogonal, forget bias 1),
        ``"torch"`` or ``"flax"``; the forget-gate bias starts at 1 only under ``"keras"``.
      peephole: ``True`` for the peephole LSTM of Gers et al. (2002), whose gates also read
        ``c`` (equations: :class:`PeepholeLSTMParams`), with the fast backward pass too.

    Returns:
      A :class:`Cell` whose params are :class:`LSTMParams` (:class:`PeepholeLSTMParams`
      with ``peephole=True``) and whose carry is :class:`LSTMState`.

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
    if check_bool("rnnjax.lstm", "peephole", peephole):
        return peephole_lstm(hidden_size, initializer)

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> LSTMParams:
        return lstm_weights(initializer, key, input_size, hidden_size, dtype)

    def gates(params: LSTMParams, carry: LSTMState, z: Array) -> tuple[LSTMState, Array]:
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMState(h, c), h

    input_size = params_check(f"lstm({hidden_size})", LSTMParams, hidden_size, 4 * hidden_size)
    cell = gated_cell(
        init, lstm_initial_carry, input_size, lstm_output, recurrent_matmul, jnp.add, gates
    )
    return mark_kernel(cell, "lstm")  # what cuDNN's LSTM computes (rnnjax._src.scan.cudnn)


def lstm_weights(
    initializer: str, key: Array, input_size: int, hidden_size: int, dtype: DTypeLike
) -> LSTMParams:
    """The LSTM's weights drawn by ``initializer``; under ``"keras"``, forget-gate bias 1."""
    w = init_weights(initializer, key, input_size, hidden_size, 4, dtype)
    if initializer == "keras":
        bias = w.bias.at[hidden_size : 2 * hidden_size].set(1)
    elif initializer == "torch":
        bias = w.bias + w.recurrent_bias
    else:
        bias = w.bias
    return LSTMParams(w.kernel, w.recurrent_kernel, bias)


def lstm_initial_carry(
    params: Params, batch_shape: BatchShape, dtype: DTypeLike | None = None
) -> LSTMState:
    zeros = zeros_carry(params, batch_shape, dtype)
    return LSTMState(zeros, zeros)


def lstm_output(carry: LSTMState) -> Array:
    return carry.h


class PeepholeLSTMParams(NamedTuple):
    r"""Parameters of ``rnnjax.lstm(hidden_size, peephole=True)``, the peephole LSTM of Gers,
    Schraudolph & Schmidhuber (2002), as TF Addons' ``PeepholeLSTMCell`` computes it.

    With gates stacked i, f, g, o in ``z = x_t W + h_{t-1} U + b`` and ``p_i, p_f, p_o`` the
    three blocks of ``peephole``:

    .. math::
        i = \sigma(z_i + p_i \odot c_{t-1}),\; f = \sigma(z_f + p_f \odot c_{t-1}),\;
        g = \tanh(z_g), \\
        c_t = f \odot c_{t-1} + i \odot g, \qquad o = \sigma(z_o + p_o \odot c_t), \qquad
        h_t = o \odot \tanh(c_t)

    Attributes:
      kernel: ``[input_size, 4 * hidden]``.
      recurrent_kernel: ``[hidden, 4 * hidden]``.
      bias: ``[4 * hidden]``.
      peephole: ``[3 * hidden]``, the diagonal peephole weights of the i, f and o gates side
        by side. ``init`` gives zeros, so a fresh peephole LSTM computes what the plain LSTM
        with the same ``kernel``, ``recurrent_kernel`` and ``bias`` computes (TF Addons draws
        them from its kernel initializer instead; Gers et al. from ``U(-0.1, 0.1)``).
    """

    kernel: Array
    recurrent_kernel: Array
    bias: Array
    peephole: Array


class LayerNormLSTMParams(NamedTuple):
    """Parameters of :func:`layer_norm_lstm`; gates in the order i, f, g, o (Haste's is i, g,
    f, o: :func:`rnnjax.interop.layer_norm_lstm_params_from_haste` converts).

    Attributes:
      kernel: ``[input_size, 4 * hidden]``, ``W``.
      recurrent_kernel: ``[hidden, 4 * hidden]``, ``U``.
      bias: ``[4 * hidden]``, ``b``: the gates' one bias.
      input_gain: ``[4 * hidden]``, the gain of the norm of ``x W`` (starts at ones).
      recurrent_gain: ``[4 * hidden]``, the gain of the norm of ``h U`` (starts at ones).
      cell_gain: ``[hidden]``, the gain of the norm of ``c`` (starts at ones).
      cell_bias: ``[hidden]``, the bias of the norm of ``c`` (starts at zeros).
    """

    kernel: Array
    recurrent_kernel: Array
    bias: Array
    input_gain: Array
    recurrent_gain: Array
    cell_gain: Array
    cell_bias: Array


def peephole_lstm(hidden_size: int, initializer: str) -> Cell:
    """The cell behind ``rnnjax.lstm(hidden_size, initializer=..., peephole=True)``."""

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> PeepholeLSTMParams:
        weights = lstm_weights(initializer, key, input_size, hidden_size, dtype)
        return PeepholeLSTMParams(*weights, jnp.zeros((3 * hidden_size,), dtype))

    def gates(params: PeepholeLSTMParams, carry: LSTMState, z: Array) -> tuple[LSTMState, Array]:
        i, f, g, o = jnp.split(z, 4, axis=-1)
        p_i, p_f, p_o = jnp.split(params.peephole, 3)
        i = jax.nn.sigmoid(i + apply_mask(carry.c, p_i))
        f = jax.nn.sigmoid(f + apply_mask(carry.c, p_f))
        c = f * carry.c + i * jnp.tanh(g)
        h = jax.nn.sigmoid(o + apply_mask(c, p_o)) * jnp.tanh(c)
        return LSTMState(h, c), h

    name = f"lstm({hidden_size}, peephole=True)"
    width = 4 * hidden_size
    input_size = params_check(
        name, PeepholeLSTMParams, hidden_size, width, peephole=(3 * hidden_size,)
    )
    cell = gated_cell(
        init, lstm_initial_carry, input_size, lstm_output, recurrent_matmul, jnp.add, gates
    )
    return mark_kernel(cell, "peephole_lstm")  # named, so a backend can say it has none


def _normalize(z: Array, epsilon: float, gain: Array, bias: Array | None = None) -> Array:
    """Layer normalisation over the last axis: ``(z - mean) / sqrt(var + epsilon) * gain
    (+ bias)``, with the biased (population) variance."""
    centred = z - jnp.mean(z, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    normalized = apply_mask(centred * jax.lax.rsqrt(variance + epsilon), gain)
    return normalized if bias is None else add_bias(normalized, bias)


def _check_epsilon(epsilon: float) -> float:
    """``epsilon`` (a float: :func:`~rnnjax.cell_factory` checked its type) if positive."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(
            f"rnnjax.layer_norm_lstm: epsilon must be a positive float; got {epsilon!r}"
        )
    return epsilon


@cell_factory
def layer_norm_lstm(hidden_size: int, *, initializer: str = "keras", epsilon: float = 1e-5) -> Cell:
    r"""The layer-normalised LSTM of Ba, Kiros & Hinton (2016), as Haste's ``LayerNormLSTM``.

    With gates stacked i, f, g, o and :math:`\mathrm{LN}(v; \alpha, \beta) = \alpha \odot
    (v - \mu_v) / \sqrt{\sigma_v^2 + \epsilon} + \beta` over the features of each example:

    .. math::
        z = \mathrm{LN}(x_t W; \alpha_x) + \mathrm{LN}(h_{t-1} U; \alpha_h) + b, \\
        i = \sigma(z_i),\; f = \sigma(z_f),\; g = \tanh(z_g),\; o = \sigma(z_o), \\
        c_t = f \odot c_{t-1} + i \odot g, \qquad
        h_t = o \odot \tanh(\mathrm{LN}(c_t; \alpha_c, \beta_c)), \qquad y_t = h_t

    These are the paper's equations (its supplementary material) as Haste implements them:
    ``x W`` and ``h U`` are normalised apart, each over all ``4 H`` pre-activations; their
    norms' biases, which only add to ``b``, are folded into it; the carry keeps ``c_t``
    itself, normalised only on its way into ``tanh``. TF Addons' ``LayerNormLSTMCell``
    differs in two ways: it keeps the two redundant biases, and its carry is the
    *normalised* cell state (the next step's forget gate multiplies ``LN(c_t)``); we follow
    the paper. ``epsilon`` defaults to Haste's and PyTorch's ``1e-5`` (TF Addons: ``1e-3``).

    The norm of ``x W`` runs in the input projection (over all steps at once when
    :func:`rnnjax.rnn` hoists it), the norm of ``h U`` and of ``c`` in the gates, which is
    where their gains live: so the cell keeps the fast backward pass.

    Gate order: rnnjax stacks the ``4 H`` blocks as i, f, g, o (Keras and PyTorch); Haste
    stores them as i, g, f, o, and names the gains ``gamma [2, 4H]`` (``input_gain``,
    ``recurrent_gain``), ``gamma_h`` and ``beta_h`` (``cell_gain``, ``cell_bias``).
    :func:`rnnjax.interop.layer_norm_lstm_params_from_haste` permutes a Haste
    ``state_dict()`` into these params; loaded unpermuted, f and g trade places.

    Args:
      hidden_size: ``H``, the size of ``h`` and ``c``.
      initializer: how ``kernel``, ``recurrent_kernel`` and ``bias`` start, as for
        :func:`rnnjax.lstm` (``"keras"``: forget-gate bias 1, as Haste's ``forget_bias``);
        the gains start at ones and the cell norm's bias at zeros under every initializer.
      epsilon: added to the variance in each of the three norms; a positive float.

    Returns:
      A :class:`Cell` whose params are :class:`LayerNormLSTMParams` and whose carry is
      :class:`LSTMState`. Equal settings return the same object.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.layer_norm_lstm(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params.input_gain.shape, params.cell_gain.shape
      ((16,), (4,))
      >>> carry, ys = rnnjax.rnn(cell, params, jnp.ones((2, 5, 3)))
      >>> carry.c.shape, ys.shape
      ((2, 4), (2, 5, 4))
    """
    epsilon = _check_epsilon(epsilon)
    width = 4 * hidden_size

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> LayerNormLSTMParams:
        weights = lstm_weights(initializer, key, input_size, hidden_size, dtype)
        gains = (jnp.ones((width,), dtype),) * 2 + (jnp.ones((hidden_size,), dtype),)
        return LayerNormLSTMParams(*weights, *gains, jnp.zeros((hidden_size,), dtype))

    def project(params: LayerNormLSTMParams, xs: Array) -> Array:
        return _normalize(matmul(xs, params.kernel), epsilon, params.input_gain, params.bias)

    def combine(projected: Array, recurrent: Array) -> tuple[Array, Array]:
        return projected, recurrent  # the norm of h U is not linear: the gates apply it

    def gates(
        params: LayerNormLSTMParams, carry: LSTMState, z: tuple[Array, Array]
    ) -> tuple[LSTMState, Array]:
        projected, recurrent = z
        preactivations = projected + _normalize(recurrent, epsilon, params.recurrent_gain)
        i, f, g, o = jnp.split(preactivations, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        normalized_c = _normalize(c, epsilon, params.cell_gain, params.cell_bias)
        h = jax.nn.sigmoid(o) * jnp.tanh(normalized_c)
        return LSTMState(h, c), h

    input_size = params_check(
        f"layer_norm_lstm({hidden_size})",
        LayerNormLSTMParams,
        hidden_size,
        width,
        input_gain=(width,),
        recurrent_gain=(width,),
        cell_gain=(hidden_size,),
        cell_bias=(hidden_size,),
    )
    return gated_cell(
        init, lstm_initial_carry, input_size, lstm_output, recurrent_matmul, combine, gates,
        project,
    )  # fmt: skip
