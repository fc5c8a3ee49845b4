"""Exact weight conversion between rnnjax and ``torch.nn.RNN`` / ``LSTM`` / ``GRU``.

PyTorch stores ``weight_ih [gates * H, I]``, ``weight_hh [gates * H, H]``, ``bias_ih`` and
``bias_hh`` per layer and direction (suffix ``_l{k}`` and ``_reverse``), with the same gate
orders as rnnjax (LSTM i, f, g, o; GRU r, z, n). rnnjax keeps the transposes; the LSTM and the
vanilla RNN keep one bias, ``bias_ih + bias_hh``; the GRU keeps both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src.cells.gru import GRUParams
from rnnjax._src.cells.lstm import LSTMState
from rnnjax._src.cells.registry import CELL_KINDS, make_cell
from rnnjax._src.core.contract import Cell
from rnnjax._src.scan.driver import rnn

Array = jax.Array
TorchParams = tuple[tuple[Any, ...], ...]
"""Params of a converted module: one tuple per layer, one cell params per direction in it."""

TORCH_KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "RNN_TANH": ("simple_rnn", {"activation": jnp.tanh}),
    "RNN_RELU": ("simple_rnn", {"activation": jax.nn.relu}),
    "LSTM": ("lstm", {}),
    "GRU": ("gru", {"reset_after": True}),
}
"""A torch module's ``mode`` -> the registry's cell kind and its settings."""


def _kind(module: Any) -> str:
    mode = getattr(module, "mode", None)
    if mode not in TORCH_KINDS:
        raise TypeError(
            "rnnjax.interop.from_torch: module must be a torch.nn.RNN, LSTM or GRU;"
            f" got {type(module).__name__}"
        )
    if mode == "LSTM" and getattr(module, "proj_size", 0):
        raise ValueError(
            f"rnnjax.interop.from_torch: LSTM with proj_size={module.proj_size} cannot be"
            " converted: rnnjax's LSTM has no output projection (use proj_size=0)"
        )
    return TORCH_KINDS[mode][0]


def _cell_for(module: Any) -> Cell:
    kind = _kind(module)
    return make_cell(kind, module.hidden_size, **TORCH_KINDS[module.mode][1])


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def _array(tensor: Any) -> Array:
    return jnp.asarray(tensor.detach().cpu().numpy())


def _layer_params(module: Any, layer: int, direction: int) -> Any:
    suffix = _suffix(layer, direction)
    kernel = _array(getattr(module, "weight_ih" + suffix)).T
    recurrent_kernel = _array(getattr(module, "weight_hh" + suffix)).T
    if module.bias:
        bias_ih = _array(getattr(module, "bias_ih" + suffix))
        bias_hh = _array(getattr(module, "bias_hh" + suffix))
    else:
        bias_ih = bias_hh = jnp.zeros(kernel.shape[1], kernel.dtype)
    params_type = CELL_KINDS[_kind(module)].params_type
    if params_type is GRUParams:
        return GRUParams(kernel, recurrent_kernel, bias_ih, bias_hh)
    return params_type(kernel, recurrent_kernel, bias_ih + bias_hh)


def from_torch(module: Any) -> tuple[Callable[..., Any], TorchParams]:
    """Converts a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` into an rnnjax function and params.

    Any ``num_layers``, ``bidirectional``, ``batch_first`` and ``bias``; ``nonlinearity``
    ``"tanh"`` or ``"relu"``. The returned ``apply`` computes what the module computes in
    evaluation mode (``module.eval()``: no dropout between layers):

    ``apply(params, xs, seq_lengths=None, initial_carry=None) -> (ys, final_state)``

    * ``xs``: ``[batch, time, input]`` if the module is ``batch_first``, else ``[time, batch,
      input]``; ``[time, input]`` for one unbatched sequence.
    * ``seq_lengths``: integer ``[batch]``; the result is what the module returns for
      ``pack_padded_sequence(xs, seq_lengths, enforce_sorted=False)`` after
      ``pad_packed_sequence(..., total_length=time)``: zeros past each length, and each
      sequence's final state at its last valid step (its first step for the reverse direction).
    * ``initial_carry``: PyTorch's ``h_0`` (``(h_0, c_0)`` for the LSTM), each
      ``[num_layers * directions, batch, hidden]``; default zeros.
    * ``ys``: ``[batch, time, directions * hidden]`` in the module's layout; ``final_state``:
      ``h_n`` (``(h_n, c_n)`` for the LSTM) shaped ``[num_layers * directions, batch, hidden]``.

    Params are a tuple with one entry per layer, each a tuple with one cell params per direction
    (:class:`~rnnjax.LSTMParams`, :class:`~rnnjax.GRUParams` or :class:`~rnnjax.SimpleRNNParams`).

    Raises:
      ValueError: for a setting rnnjax cannot express (an LSTM with ``proj_size``).
      TypeError: for a module that is not one of the three.

    Example:
      >>> import torch, jax.numpy as jnp, rnnjax.interop
      >>> module = torch.nn.GRU(3, 8, num_layers=2, batch_first=True, bidirectional=True)
      >>> apply, params = rnnjax.interop.from_torch(module)
      >>> ys, h_n = apply(params, jnp.ones((4, 10, 3)), seq_lengths=jnp.array([10, 7, 1, 4]))
      >>> ys.shape, h_n.shape
      ((4, 10, 16), (4, 4, 8))
    """
    cell = _cell_for(module)
    directions = 2 if module.bidirectional else 1
    params = tuple(
        tuple(_layer_params(module, layer, d) for d in range(directions))
        for layer in range(module.num_layers)
    )
    is_lstm = module.mode == "LSTM"
    batch_first = module.batch_first

    def apply(
        params: TorchParams,
        xs: Array,
        seq_lengths: Array | None = None,
        initial_carry: Any = None,
    ) -> tuple[Array, Any]:
        unbatched = jnp.ndim(xs) == 2
        if unbatched:
            xs = xs[None] if batch_first else xs[:, None]
            if initial_carry is not None:
                initial_carry = jax.tree.map(lambda a: a[:, None], initial_carry)
        finals = []
        for layer, layer_params in enumerate(params):
            outputs = []
            for direction, cell_params in enumerate(layer_params):
                carry = None
                if initial_carry is not None:
                    index = layer * len(layer_params) + direction
                    carry = jax.tree.map(lambda a, i=index: a[i], initial_carry)
                    carry = LSTMState(*carry) if is_lstm else carry
                final, ys = rnn(
                    cell,
                    cell_params,
                    xs,
                    initial_carry=carry,
                    seq_lengths=seq_lengths,
                    reverse=direction == 1,
                    time_major=not batch_first,
                )
                finals.append(final)
                outputs.append(ys)
            xs = jnp.concatenate(outputs, axis=-1)
        state = jax.tree.map(lambda *a: jnp.stack(a), *finals)
        state = (state.h, state.c) if is_lstm else state
        if unbatched:
            xs = xs[0] if batch_first else xs[:, 0]
            state = jax.tree.map(lambda a: a[:, 0], state)
        return xs, state

    return apply, params


def to_torch(params: TorchParams, module: Any) -> None:
    """Writes rnnjax params (as :func:`from_torch` gives them) into ``module``, in place.

    The LSTM's and vanilla RNN's single bias goes to ``bias_ih`` and ``bias_hh`` is zeroed, so
    the module computes exactly what the params compute.

    Raises:
      ValueError: if the params' layers, directions or shapes do not match the module, or if
        they hold a nonzero bias and the module has ``bias=False``.
    """
    import torch

    expected_type = CELL_KINDS[_kind(module)].params_type
    directions = 2 if module.bidirectional else 1
    if len(params) != module.num_layers or any(len(layer) != directions for layer in params):
        raise ValueError(
            f"rnnjax.interop.to_torch: params must have {module.num_layers} layers of"
            f" {directions} direction(s); got {[len(layer) for layer in params]}"
        )
    with torch.no_grad():
        for layer, layer_params in enumerate(params):
            for direction, cell_params in enumerate(layer_params):
                suffix = _suffix(layer, direction)
                if type(cell_params) is not expected_type:
                    raise ValueError(
                        f"rnnjax.interop.to_torch: a torch.nn.{type(module).__name__} takes"
                        f" {expected_type.__name__}; got {type(cell_params).__name__} at"
                        f" layer {layer}, direction {direction}"
                    )
                if expected_type is GRUParams and cell_params.recurrent_bias is None:
                    raise ValueError(
                        "rnnjax.interop.to_torch: torch.nn.GRU computes the reset_after=True"
                        " form; params of rnnjax.gru(reset_after=False) cannot be converted"
                    )
                bias_hh = getattr(cell_params, "recurrent_bias", None)
                if bias_hh is None:
                    bias_hh = jnp.zeros_like(cell_params.bias)
                values = {
                    "weight_ih": cell_params.kernel.T,
                    "weight_hh": cell_params.recurrent_kernel.T,
                    "bias_ih": cell_params.bias,
                    "bias_hh": bias_hh,
                }
                if not module.bias:
                    if jnp.any(cell_params.bias != 0) or jnp.any(bias_hh != 0):
                        raise ValueError(
                            "rnnjax.interop.to_torch: the params have a nonzero bias at"
                            f" layer {layer}, direction {direction}, but the module has"
                            " bias=False"
                        )
                    del values["bias_ih"], values["bias_hh"]
                for name, value in values.items():
                    target = getattr(module, name + suffix)
                    if tuple(target.shape) != tuple(value.shape):
                        raise ValueError(
                            f"rnnjax.interop.to_torch: {name + suffix} must have shape"
                            f" {tuple(target.shape)}; got {tuple(value.shape)}"
                        )
                    target.copy_(torch.tensor(np.asarray(value, np.float32)))
