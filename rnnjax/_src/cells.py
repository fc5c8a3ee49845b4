"""The built-in cells: the vanilla RNN, the LSTM and the GRU, each a :class:`~rnnjax.Cell`.

Each step is ``gates(params, carry, combine(x @ kernel + bias, recurrent(params, h)))``: the input
projection, the recurrent matmul, and the elementwise rest. Built from those three parts, a
cell gets every capability of the contract (:mod:`rnnjax._src.contract`) from one set of
equations; the GRU with ``reset_after=False``, whose reset gate acts before its second
matmul, offers the projection split only.

Matmuls with low-precision weights (bfloat16, float16) accumulate and return float32
(``preferred_element_type``), so the gates and the state after them run in float32: the
hardware's fast low-precision matmul, without rounding the gates.

Weights follow Keras's layout: ``kernel [input_size, gates * hidden]``, ``recurrent_kernel
[hidden, gates * hidden]``, ``bias [gates * hidden]``, gates side by side in the order each
cell's docstring gives.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.checks import checked_step
from rnnjax._src.contract import (
    BatchShape,
    Carry,
    Cell,
    CombineFn,
    GatesFn,
    GateSplit,
    Params,
    ProjectFn,
    Projection,
    RecurrentFn,
)
from rnnjax._src.initializers import INITIALIZERS, init_weights
from rnnjax._src.matmul import add_bias, apply_mask, matmul
from rnnjax._src.validate import check_bool, check_choice, check_int

Array = jax.Array


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


def _one_cell_per_setting(make: Callable[..., Cell]) -> Callable[..., Cell]:
    """``make``, returning the same :class:`Cell` for equal settings however they are spelled
    (``lstm(8)``, ``lstm(8, initializer="keras")``), so a cell is a stable static argument;
    its ``step`` checks its arguments as :func:`rnnjax.rnn` does (at trace time)."""
    signature = inspect.signature(make)

    @functools.lru_cache(maxsize=None, typed=True)  # typed: ``peephole=1`` is not ``True``
    def checked(*args: Any, **kwargs: Any) -> Cell:
        cell = make(*args, **kwargs)
        where = f"rnnjax.{make.__name__}({args[0]}).step"
        return cell._replace(step=checked_step(cell, where))

    @functools.wraps(make)
    def make_once(*args: Any, **kwargs: Any) -> Cell:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        _check_settings(f"rnnjax.{make.__name__}", signature, bound.arguments)
        return checked(*bound.args, **bound.kwargs)

    return make_once


def _check_settings(where: str, signature: inspect.Signature, arguments: dict[str, Any]) -> None:
    """A cell factory's arguments, checked before the per-setting cache is consulted (where
    ``2.0 == 2`` and ``True == 1`` would find another setting's cell): ``hidden_size`` an int,
    ``initializer`` a known scheme, bool settings bools, callables callable."""
    arguments["hidden_size"] = check_int(where, "hidden_size", arguments["hidden_size"])
    for name, value in arguments.items():
        default = signature.parameters[name].default
        if name == "hidden_size":
            continue
        if name == "initializer":
            check_choice(where, name, value, INITIALIZERS)
        elif isinstance(default, bool):
            arguments[name] = check_bool(where, name, value)
        elif callable(default) and not callable(value):
            raise TypeError(f"{where}: {name} must be callable; got {value!r}")


def _batch_tuple(batch_shape: BatchShape) -> tuple[int, ...]:
    return (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)


def _zeros(params: Params, batch_shape: BatchShape, dtype: DTypeLike | None = None) -> Array:
    hidden = params.recurrent_kernel.shape[0]
    return jnp.zeros((*_batch_tuple(batch_shape), hidden), dtype or params.recurrent_kernel.dtype)


def _project(params: Params, xs: Array) -> Array:
    return add_bias(matmul(xs, params.kernel), params.bias)


def _recurrent_matmul(params: Params, h: Array) -> Array:
    return matmul(h, params.recurrent_kernel)


def _params_check(
    name: str,
    params_type: type,
    hidden: int,
    width: int,
    recurrent_bias: bool | None = None,
    **more: tuple[int, ...],
) -> Callable[[Params], int]:
    """``input_size`` of a built-in cell: ``kernel.shape[0]``, once the params are checked.

    ``recurrent_bias``: ``None`` where the params type has no such field, else whether the
    cell needs one (the GRU's two forms). ``more``: the shapes of any further fields.
    """
    expected: dict[str, Any] = {"kernel": f"[input_size, {width}]"}
    expected.update(recurrent_kernel=(hidden, width), bias=(width,))
    if recurrent_bias is not None:
        expected["recurrent_bias"] = (width,) if recurrent_bias else None
    expected.update(more)

    def describe(fields: dict[str, Any]) -> str:
        return ", ".join(f"{key}={value}" for key, value in fields.items())

    def input_size(params: Params) -> int:
        got = {key: getattr(params, key, "missing") for key in expected}
        got = {k: tuple(v.shape) if hasattr(v, "shape") else v for k, v in got.items()}
        kernel = got["kernel"]
        fits = (
            isinstance(kernel, tuple)
            and len(kernel) == 2
            and kernel[1] == width
            and all(got[key] == value for key, value in expected.items() if key != "kernel")
        )
        if not fits:
            raise ValueError(
                f"rnnjax.{name}: params must be {params_type.__name__}({describe(expected)});"
                f" got {type(params).__name__} with {describe(got)}"
            )
        return int(kernel[0])

    return input_size


def _cell(
    init: Callable[..., Params],
    initial_carry: Callable[..., Carry],
    input_size: Callable[[Params], int],
    output: Callable[[Carry], Array],
    recurrent: RecurrentFn,
    combine: CombineFn,
    gates: GatesFn,
    project: ProjectFn = _project,
) -> Cell:
    """The cell whose step is ``gates(params, carry, combine(project(params, x),
    recurrent(params, h)))``; ``project`` is ``x @ kernel + bias`` unless given."""

    def projected_step(
        params: Params, carry: Carry, projected: Array, recurrent_mask: Array | None = None
    ) -> tuple[Carry, Array]:
        h = apply_mask(output(carry), recurrent_mask)
        return gates(params, carry, combine(projected, recurrent(params, h)))

    def step(params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        return projected_step(params, carry, project(params, x))

    return Cell(
        init,
        initial_carry,
        step,
        input_size,
        output,
        Projection(project, projected_step),
        GateSplit(recurrent, combine, gates),
    )


def _identity(carry: Array) -> Array:
    return carry


@_one_cell_per_setting
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
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"``; see docs/guides/cells.md.

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

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> SimpleRNNParams:
        w = init_weights(initializer, key, input_size, hidden_size, 1, dtype)
        bias = w.bias + w.recurrent_bias if initializer == "torch" else w.bias
        return SimpleRNNParams(w.kernel, w.recurrent_kernel, bias)

    def gates(params: SimpleRNNParams, h: Array, z: Array) -> tuple[Array, Array]:
        h_new = activation(z)
        return h_new, h_new

    input_size = _params_check(
        f"simple_rnn({hidden_size})", SimpleRNNParams, hidden_size, hidden_size
    )
    return _cell(init, _zeros, input_size, _identity, _recurrent_matmul, jnp.add, gates)


@_one_cell_per_setting
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
        from rnnjax._src.lstm_variants import peephole_lstm  # it builds on this module

        return peephole_lstm(hidden_size, initializer)

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> LSTMParams:
        return lstm_weights(initializer, key, input_size, hidden_size, dtype)

    def gates(params: LSTMParams, carry: LSTMState, z: Array) -> tuple[LSTMState, Array]:
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMState(h, c), h

    input_size = _params_check(f"lstm({hidden_size})", LSTMParams, hidden_size, 4 * hidden_size)
    return _cell(
        init, lstm_initial_carry, input_size, lstm_output, _recurrent_matmul, jnp.add, gates
    )


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
    zeros = _zeros(params, batch_shape, dtype)
    return LSTMState(zeros, zeros)


def lstm_output(carry: LSTMState) -> Array:
    return carry.h


@_one_cell_per_setting
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

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> GRUParams:
        w = init_weights(initializer, key, input_size, hidden_size, 3, dtype)
        recurrent_bias = w.recurrent_bias if reset_after else None
        return GRUParams(w.kernel, w.recurrent_kernel, w.bias, recurrent_bias)

    name = f"gru({hidden_size}, reset_after={reset_after})"
    input_size = _params_check(name, GRUParams, hidden_size, 3 * hidden_size, reset_after)
    if reset_after:
        return _cell(init, _zeros, input_size, _identity, _gru_recurrent, _gru_combine, _gru_gates)

    # reset_after=False: the reset gate acts before the second matmul, so there is no
    # recurrent/gates split (and no fused backward pass).
    def projected_step(
        params: GRUParams, h: Array, projected: Array, recurrent_mask: Array | None = None
    ) -> tuple[Array, Array]:
        x_rz, x_n = jnp.split(projected, [2 * hidden_size], axis=-1)
        u_rz, u_n = jnp.split(params.recurrent_kernel, [2 * hidden_size], axis=-1)
        h_in = apply_mask(h, recurrent_mask)
        r, z = jnp.split(jax.nn.sigmoid(x_rz + matmul(h_in, u_rz)), 2, axis=-1)
        n = jnp.tanh(x_n + matmul(r * h_in, u_n))
        h_new = (1 - z) * n + z * h
        return h_new, h_new

    def step(params: GRUParams, h: Array, x: Array) -> tuple[Array, Array]:
        return projected_step(params, h, _project(params, x))

    projection = Projection(_project, projected_step)
    return Cell(init, _zeros, step, input_size, _identity, projection)


def _gru_recurrent(params: GRUParams, h: Array) -> Array:
    assert params.recurrent_bias is not None, "reset_after=True needs recurrent_bias"
    return add_bias(matmul(h, params.recurrent_kernel), params.recurrent_bias)


def _gru_combine(projected: Array, recurrent: Array) -> tuple[Array, Array, Array]:
    # The r and z pre-activations (2H), the candidate's input part and its recurrent part:
    # three arrays, not one concatenation, which each step (and its tangent) would write.
    x_rz, x_n = jnp.split(projected, [2 * (projected.shape[-1] // 3)], axis=-1)
    h_rz, h_n = jnp.split(recurrent, [2 * (recurrent.shape[-1] // 3)], axis=-1)
    return x_rz + h_rz, x_n, h_n


def _gru_gates(
    params: GRUParams, h: Array, preactivations: tuple[Array, Array, Array]
) -> tuple[Array, Array]:
    rz, x_n, h_n = preactivations
    r, z = jnp.split(jax.nn.sigmoid(rz), 2, axis=-1)
    n = jnp.tanh(x_n + r * h_n)
    h_new = (1 - z) * n + z * h
    return h_new, h_new
