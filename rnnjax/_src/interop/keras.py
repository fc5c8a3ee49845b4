"""Exact weight conversion between rnnjax and Keras 3 ``SimpleRNN`` / ``LSTM`` / ``GRU``.

Keras stores ``kernel [I, gates * H]``, ``recurrent_kernel [H, gates * H]`` and ``bias``, as
rnnjax does. The LSTM's gates (i, f, c, o) are rnnjax's order; the GRU's are z, r, h, which
rnnjax keeps as r, z, n; a ``reset_after=True`` GRU's bias is ``[2, 3H]`` (input bias, then
recurrent bias).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src.cells.gru import GRUParams
from rnnjax._src.cells.lstm import LSTMState
from rnnjax._src.cells.registry import CELL_KINDS, make_cell
from rnnjax._src.core.contract import Cell
from rnnjax._src.layers.compose import merge_outputs
from rnnjax._src.scan.driver import rnn

Array = jax.Array


def _linear(x: Array) -> Array:
    return x


SIMPLE_RNN_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "linear": _linear,
}
KERAS_KINDS = {"SimpleRNN": "simple_rnn", "LSTM": "lstm", "GRU": "gru"}
"""A Keras layer's class name -> the registry's cell kind."""
MERGE_MODES = {"concat": "concat", "sum": "sum", "ave": "ave", "mul": "mul", None: "none"}
"""Keras's ``merge_mode`` -> :func:`rnnjax.bidirectional`'s ``merge``."""


def _gru_permutation(hidden: int) -> np.ndarray:
    """Column indices that take Keras's z, r, h blocks to rnnjax's r, z, n (an involution)."""
    return np.concatenate(
        [np.arange(hidden, 2 * hidden), np.arange(hidden), np.arange(2 * hidden, 3 * hidden)]
    )


def _check_setting(layer: Any, setting: str, allowed: Sequence[str]) -> str:
    value = layer.get_config()[setting]
    value = value if isinstance(value, str) else str(value)
    if value not in allowed:
        raise ValueError(
            f"rnnjax.interop: {type(layer).__name__}({setting}={value!r}) cannot be converted;"
            f" rnnjax supports {setting} in {tuple(allowed)}"
        )
    return value


def _cell_for(layer: Any) -> Cell:
    kind = KERAS_KINDS.get(type(layer).__name__)
    if kind is None:
        raise TypeError(
            "rnnjax.interop: layer must be a keras.layers.SimpleRNN, LSTM, GRU or a"
            f" Bidirectional over one; got {type(layer).__name__}"
        )
    if kind == "simple_rnn":
        activation = _check_setting(layer, "activation", tuple(SIMPLE_RNN_ACTIVATIONS))
        return make_cell(kind, layer.units, activation=SIMPLE_RNN_ACTIVATIONS[activation])
    _check_setting(layer, "activation", ("tanh",))
    _check_setting(layer, "recurrent_activation", ("sigmoid",))
    settings = {"reset_after": layer.reset_after} if kind == "gru" else {}
    return make_cell(kind, layer.units, **settings)


def _layer_params(layer: Any) -> Any:
    # Variables' values, not get_weights(): Keras 3.15 warns inside it under NumPy 2.
    weights = [jnp.asarray(variable.value) for variable in layer.weights]
    kernel, recurrent_kernel = weights[:2]
    width = kernel.shape[1]
    bias = weights[2] if layer.use_bias else jnp.zeros((width,), kernel.dtype)
    params_type = CELL_KINDS[KERAS_KINDS[type(layer).__name__]].params_type
    if params_type is not GRUParams:
        return params_type(kernel, recurrent_kernel, bias)
    order = _gru_permutation(layer.units)
    if layer.reset_after:
        biases = bias if layer.use_bias else jnp.zeros((2, width), kernel.dtype)
        return GRUParams(
            kernel[:, order], recurrent_kernel[:, order], biases[0][order], biases[1][order]
        )
    return GRUParams(kernel[:, order], recurrent_kernel[:, order], bias[order], None)


def _layer_weights(params: Any, layer: Any) -> list[np.ndarray]:
    """The inverse of :func:`_layer_params`: the values of ``layer.weights``, in order."""
    kernel, recurrent_kernel, bias = params.kernel, params.recurrent_kernel, params.bias
    if type(layer).__name__ == "GRU":
        order = _gru_permutation(layer.units)
        kernel, recurrent_kernel, bias = kernel[:, order], recurrent_kernel[:, order], bias[order]
        if layer.reset_after:
            bias = jnp.stack([bias, params.recurrent_bias[order]])
    weights = [kernel, recurrent_kernel] + ([bias] if layer.use_bias else [])
    if not layer.use_bias and jnp.any(params.bias != 0):
        raise ValueError(
            f"rnnjax.interop.to_keras: the params have a nonzero bias but the"
            f" {type(layer).__name__} layer has use_bias=False"
        )
    return [np.asarray(w) for w in weights]


def _sublayers(layer: Any) -> tuple[Any, ...]:
    if type(layer).__name__ == "Bidirectional":
        return (layer.forward_layer, layer.backward_layer)
    return (layer,)


def _make_single_apply(layer: Any) -> Callable[..., Any]:
    """``(params, xs, initial_state) -> (ys or last output, states)`` for one RNN layer."""
    cell = _cell_for(layer)
    is_lstm = type(layer).__name__ == "LSTM"
    go_backwards, return_sequences = layer.go_backwards, layer.return_sequences

    def apply(params: Any, xs: Array, initial_state: Sequence[Array] | None) -> Any:
        carry = None
        if initial_state is not None:
            carry = LSTMState(*initial_state) if is_lstm else initial_state[0]
        # Keras's go_backwards reads the sequence last step first and returns the outputs in
        # that order: a forward run over the flipped sequence.
        inputs = jnp.flip(xs, axis=-2) if go_backwards else xs
        final, ys = rnn(cell, params, inputs, initial_carry=carry)
        states = (final.h, final.c) if is_lstm else (final,)
        return (ys if return_sequences else ys[..., -1, :]), states

    return apply


def from_keras(layer: Any) -> tuple[Callable[..., Any], Any]:
    """Converts a built Keras 3 recurrent layer into an rnnjax function and params.

    Supports ``SimpleRNN`` (activation tanh, relu, sigmoid or linear), ``LSTM`` and ``GRU``
    (both ``reset_after`` forms; activation tanh, recurrent activation sigmoid), with or
    without ``use_bias``, and ``Bidirectional`` over them (every ``merge_mode``). The returned
    ``apply(params, xs, initial_state=None)`` honours ``return_sequences``, ``return_state``
    and ``go_backwards`` and returns what the layer returns in inference: the output
    (``[batch, time, units]`` or ``[batch, units]``), or with ``return_state`` the tuple
    ``(output, *states)``; for ``Bidirectional`` the forward states then the backward ones, and
    with ``merge_mode=None`` two outputs. ``initial_state`` is Keras's list of state arrays.

    Params are the cell's params (:class:`~rnnjax.LSTMParams`, :class:`~rnnjax.GRUParams`,
    :class:`~rnnjax.SimpleRNNParams`), or a ``(forward, backward)`` pair for ``Bidirectional``.
    Keras's input masks and dropout (training only) are not part of ``apply``.

    Raises:
      ValueError: naming the setting, for an activation rnnjax has no cell for.
      TypeError: for a layer that is not one of these.

    Example:
      >>> import os; os.environ.setdefault("KERAS_BACKEND", "jax")
      'jax'
      >>> import keras, numpy as np, rnnjax.interop
      >>> layer = keras.layers.Bidirectional(keras.layers.GRU(8, return_sequences=True))
      >>> xs = np.ones((2, 5, 3), np.float32)
      >>> _ = layer(xs)                                  # build it
      >>> apply, params = rnnjax.interop.from_keras(layer)
      >>> bool(np.allclose(apply(params, xs), layer(xs), atol=1e-5))
      True
    """
    sublayers = _sublayers(layer)
    applies = [_make_single_apply(sublayer) for sublayer in sublayers]
    if not layer.built:
        raise ValueError("rnnjax.interop.from_keras: the layer has no weights yet; call it once")
    converted = [_layer_params(sublayer) for sublayer in sublayers]
    return_state = layer.return_state
    if len(sublayers) == 1:

        def apply(params: Any, xs: Array, initial_state: Sequence[Array] | None = None) -> Any:
            output, states = applies[0](params, xs, initial_state)
            return (output, *states) if return_state else output

        return apply, converted[0]

    merge_mode, return_sequences = layer.merge_mode, layer.return_sequences
    if merge_mode not in MERGE_MODES:
        raise ValueError(f"rnnjax.interop.from_keras: unknown merge_mode {merge_mode!r}")

    def apply_bidirectional(
        params: Any, xs: Array, initial_state: Sequence[Array] | None = None
    ) -> Any:
        forward_state = backward_state = None
        if initial_state is not None:  # Keras's order: the forward states, then the backward
            half = len(initial_state) // 2
            forward_state, backward_state = initial_state[:half], initial_state[half:]
        y, states = applies[0](params[0], xs, forward_state)
        y_rev, states_rev = applies[1](params[1], xs, backward_state)
        if return_sequences:
            y_rev = jnp.flip(y_rev, axis=-2)
        output = merge_outputs(MERGE_MODES[merge_mode], y, y_rev)
        if not return_state:
            return output
        outputs = output if merge_mode is None else (output,)
        return (*outputs, *states, *states_rev)

    return apply_bidirectional, tuple(converted)


def to_keras(params: Any, layer: Any) -> None:
    """Writes rnnjax params (as :func:`from_keras` gives them) into a built Keras layer.

    Raises:
      ValueError: if the params' kind or shapes do not fit the layer, or they hold a nonzero
        bias and the layer has ``use_bias=False``.
    """
    sublayers = _sublayers(layer)
    per_layer = (params,) if len(sublayers) == 1 else tuple(params)
    if len(per_layer) != len(sublayers):
        raise ValueError(
            f"rnnjax.interop.to_keras: a Bidirectional layer takes a (forward, backward) pair"
            f" of params; got {len(per_layer)}"
        )
    for sublayer, sub_params in zip(sublayers, per_layer, strict=True):
        kind, expected = type(sublayer).__name__, type(_layer_params(sublayer))
        if type(sub_params) is not expected:
            raise ValueError(
                f"rnnjax.interop.to_keras: a {kind} layer takes {expected.__name__};"
                f" got {type(sub_params).__name__}"
            )
        if kind == "GRU" and sublayer.reset_after != (sub_params.recurrent_bias is not None):
            raise ValueError(
                f"rnnjax.interop.to_keras: a GRU layer with reset_after={sublayer.reset_after}"
                f" takes params of rnnjax.gru(reset_after={sublayer.reset_after})"
            )
        weights = _layer_weights(sub_params, sublayer)
        variables = sublayer.weights
        if [tuple(w.shape) for w in weights] != [tuple(v.shape) for v in variables]:
            raise ValueError(
                f"rnnjax.interop.to_keras: {kind} weights must have shapes"
                f" {[tuple(v.shape) for v in variables]}; got {[w.shape for w in weights]}"
            )
        for variable, value in zip(variables, weights, strict=True):
            variable.assign(value)
