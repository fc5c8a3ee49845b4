"""Weights of the original implementations rnnjax's cells follow, in rnnjax's gate order:
Haste's ``LayerNormLSTM`` (lmnt-com/haste) and mingru-pytorch's ``minGRU``/``minLSTM``
(lucidrains/minGRU-pytorch). Each converter takes the module's ``state_dict()`` (torch
tensors, NumPy or JAX arrays) and permutes its gate blocks, so the cell computes what the
original computes on the same input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from rnnjax._src.cells.lstm import LayerNormLSTMParams
from rnnjax._src.cells.minimal import MinRNNParams

Array = jax.Array


def _array(where: str, tree: Mapping[str, Any], name: str) -> Array:
    """``tree[name]`` as a floating JAX array (a torch tensor is detached first)."""
    if not isinstance(tree, Mapping) or name not in tree:
        have = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
        raise ValueError(f"{where}: the state_dict must hold {name!r}; got {have}")
    value = tree[name]
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(f"{where}: {name} must be floating point; got {array.dtype}")
    return array


def _blocks(array: Array, order: tuple[int, ...]) -> Array:
    """``array``'s last axis cut in ``len(order)`` equal blocks, put in ``order``."""
    blocks = jnp.split(array, len(order), axis=-1)
    return jnp.concatenate([blocks[i] for i in order], axis=-1)


def _check_shapes(
    where: str, got: dict[str, tuple[int, ...]], want: dict[str, tuple[int, ...]]
) -> None:
    if got != want:
        raise ValueError(f"{where}: the state_dict's shapes must be {want}; got {got}")


def layer_norm_lstm_params_from_haste(state_dict: Mapping[str, Any]) -> LayerNormLSTMParams:
    """:func:`rnnjax.layer_norm_lstm` params from Haste's ``LayerNormLSTM`` (PyTorch).

    Haste stores its gates as i, g, f, o; rnnjax as i, f, g, o (Keras and PyTorch's order):
    each ``4 H`` axis is permuted. Haste's names: ``kernel [I, 4H]``, ``recurrent_kernel
    [H, 4H]``, ``bias [4H]``, ``gamma [2, 4H]`` (the gains of the norms of ``x W`` and ``h
    U``), ``gamma_h [H]`` and ``beta_h [H]`` (the norm of ``c``). With Haste's ``epsilon``,
    ``1e-5`` (rnnjax's default), and ``zoneout=0``, ``rnnjax.layer_norm_lstm(H)`` on these
    params computes Haste's outputs (Haste's input is time-major unless ``batch_first``).

    Args:
      state_dict: ``haste_pytorch.LayerNormLSTM(...).state_dict()``, or the same names as
        NumPy or JAX arrays.

    Returns:
      :class:`~rnnjax.LayerNormLSTMParams`.

    Raises:
      ValueError, TypeError: naming the entry, for a missing name, a shape that is not
        Haste's or an integer array.

    Example:
      >>> import numpy as np, rnnjax
      >>> haste = {"kernel": np.ones((3, 8)), "recurrent_kernel": np.ones((2, 8)),
      ...          "bias": np.arange(8.0), "gamma": np.ones((2, 8)),
      ...          "gamma_h": np.ones(2), "beta_h": np.zeros(2)}
      >>> params = rnnjax.interop.layer_norm_lstm_params_from_haste(haste)
      >>> params.bias.tolist()  # Haste's i, g, f, o blocks as i, f, g, o
      [0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0]
    """
    where = "rnnjax.interop.layer_norm_lstm_params_from_haste"
    names = ("kernel", "recurrent_kernel", "bias", "gamma", "gamma_h", "beta_h")
    arrays = {name: _array(where, state_dict, name) for name in names}
    hidden, inputs = arrays["recurrent_kernel"].shape[0], arrays["kernel"].shape[0]
    want: dict[str, tuple[int, ...]] = {
        "kernel": (inputs, 4 * hidden),
        "recurrent_kernel": (hidden, 4 * hidden),
        "bias": (4 * hidden,),
        "gamma": (2, 4 * hidden),
        "gamma_h": (hidden,),
        "beta_h": (hidden,),
    }
    _check_shapes(where, {name: tuple(a.shape) for name, a in arrays.items()}, want)
    i_f_g_o = (0, 2, 1, 3)  # from Haste's i, g, f, o
    kernel, recurrent, bias, gamma = (
        _blocks(arrays[name], i_f_g_o) for name in ("kernel", "recurrent_kernel", "bias", "gamma")
    )
    return LayerNormLSTMParams(
        kernel, recurrent, bias, gamma[0], gamma[1], arrays["gamma_h"], arrays["beta_h"]
    )


def _min_params(
    where: str, state_dict: Mapping[str, Any], name: str, order: tuple[int, ...]
) -> MinRNNParams:
    """The ``Linear`` ``name`` (``weight [gates * H, I]``, no bias) as ``MinRNNParams``."""
    if isinstance(state_dict, Mapping) and "to_out.weight" in state_dict:
        raise ValueError(
            f"{where}: the state_dict has 'to_out.weight', a linear layer after the cell"
            " (mingru-pytorch's proj_out, on when expansion_factor != 1): convert the cell's"
            " weights without it and apply `ys @ to_out.weight.T` to the outputs yourself"
        )
    weight = _array(where, state_dict, name)
    gates = len(order)
    if weight.ndim != 2 or weight.shape[0] % gates:
        raise ValueError(
            f"{where}: {name} must have shape [{gates} * hidden, input_size]; got {weight.shape}"
        )
    kernel = _blocks(weight.T, order)
    return MinRNNParams(kernel, jnp.zeros(kernel.shape[-1], kernel.dtype))


def min_gru_params_from_mingru(state_dict: Mapping[str, Any]) -> MinRNNParams:
    """:func:`rnnjax.min_gru` params from mingru-pytorch's ``minGRU``.

    mingru-pytorch's ``to_hidden_and_gate`` (``weight [2H, I]``, no bias) stores the blocks
    (hidden, gate); rnnjax's kernel ``[I, 2H]`` holds (z, h~), the gate first: the blocks
    are swapped and transposed, and the bias is zero. ``rnnjax.min_gru(H)`` then computes
    what ``minGRU(dim)`` computes from a zero state (``prev_hidden=None``).

    Args:
      state_dict: ``minGRU(dim).state_dict()`` (``expansion_factor=1``: no ``to_out``), or
        the same name as a NumPy or JAX array.

    Returns:
      :class:`~rnnjax.MinRNNParams`.

    Raises:
      ValueError, TypeError: for a missing or misshapen weight, and for ``to_out.weight``
        (a projection after the cell, to apply yourself).

    Example:
      >>> import numpy as np, rnnjax
      >>> weight = np.arange(4.0)[:, None] * np.ones((4, 3))   # rows: hidden 0, 1; gate 2, 3
      >>> params = rnnjax.interop.min_gru_params_from_mingru({"to_hidden_and_gate.weight": weight})
      >>> params.kernel[0].tolist(), params.kernel.shape        # columns: gate, then hidden
      ([2.0, 3.0, 0.0, 1.0], (3, 4))
    """
    where = "rnnjax.interop.min_gru_params_from_mingru"
    return _min_params(where, state_dict, "to_hidden_and_gate.weight", (1, 0))


def min_lstm_params_from_mingru(state_dict: Mapping[str, Any]) -> MinRNNParams:
    """:func:`rnnjax.min_lstm` params from mingru-pytorch's ``minLSTM``.

    mingru-pytorch's ``to_hidden_and_f_i_gate`` (``weight [3H, I]``, no bias) stores the
    blocks (hidden, f, i); rnnjax's kernel ``[I, 3H]`` holds (f, i, h~): the blocks are
    rotated and transposed, and the bias is zero. ``rnnjax.min_lstm(H)`` then computes what
    ``minLSTM(dim)`` computes from a zero state (``prev_hidden=None``).

    Args:
      state_dict: ``minLSTM(dim).state_dict()`` (``expansion_factor=1``: no ``to_out``), or
        the same name as a NumPy or JAX array.

    Returns:
      :class:`~rnnjax.MinRNNParams`.

    Raises:
      ValueError, TypeError: as :func:`min_gru_params_from_mingru`.

    Example:
      >>> import numpy as np, rnnjax
      >>> weight = np.arange(3.0)[:, None] * np.ones((3, 2))   # rows: hidden, f, i (H = 1)
      >>> state = {"to_hidden_and_f_i_gate.weight": weight}
      >>> rnnjax.interop.min_lstm_params_from_mingru(state).kernel[0].tolist()  # f, i, hidden
      [1.0, 2.0, 0.0]
    """
    where = "rnnjax.interop.min_lstm_params_from_mingru"
    return _min_params(where, state_dict, "to_hidden_and_f_i_gate.weight", (1, 2, 0))
