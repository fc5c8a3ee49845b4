"""The cuDNN backend: a plain LSTM run by ``jax.experimental.rnn.lstm`` on an NVIDIA GPU.

``backend="cudnn"`` (a setting of :func:`rnnjax.rnn`, :func:`rnnjax.layer` and the modules)
sends a plain :func:`rnnjax.lstm` (gates i, f, g, o; sigmoid and tanh; one bias) to cuDNN's
LSTM. The weights are packed from the cell's :class:`~rnnjax.LSTMParams` (Keras layout,
``x @ kernel``) into cuDNN's flat vector inside the jitted function, so the params stay the
cell's own and their gradients come back through cuDNN's own backward pass (its VJP; forward
mode is not defined for it). Lengths (0 included), ``reverse`` and the initial carry keep
:func:`rnnjax.rnn`'s meaning exactly. :func:`lstm_layers` runs cuDNN's own directions and
layers: :func:`rnnjax.bidirectional` of two such layers, and :func:`rnnjax.stack` of such
layers or pairs, run as one call (:mod:`rnnjax._src.layers.cudnn_fused`).

What cuDNN cannot serve is refused by name (:func:`refusal`), never approximated: another
cell, a setting it has no counterpart for, a dtype other than float32, no CUDA GPU.
``backend="auto"`` takes the XLA path today (:func:`auto_backend`).

The kernel sits behind one value, :data:`KERNEL`, which tests swap for :data:`REFERENCE`
(``jax.experimental.rnn.lstm_ref``, JAX's pure-JAX model of the same packed weights, which
runs anywhere): both go through the same packing and the same handling of lengths,
reversal and carries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.experimental.rnn as jax_rnn
import jax.numpy as jnp

from rnnjax._src.core.contract import Carry, Cell, Params
from rnnjax._src.core.kernels import kernel_of
from rnnjax._src.core.settings import LayerSettings

Array = jax.Array


# --- The kernel behind one value (the test seam) -------------------------------------------


def cuda_refusal() -> str | None:
    """Why no CUDA GPU runs the kernel here, or ``None`` on a CUDA GPU."""
    backend = jax.default_backend()
    if backend != "gpu":
        return f"no CUDA GPU (jax.default_backend() is {backend!r})"
    version = str(getattr(jax.devices()[0].client, "platform_version", "")).lower()
    if "rocm" in version:
        return f"no CUDA GPU (the GPU runs ROCm: {version!r})"
    return None


def reference_lstm(
    x: Array,
    h_0: Array,
    c_0: Array,
    weights: Array,
    seq_lengths: Array,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    bidirectional: bool,
) -> tuple[Array, Array, Array]:
    """``jax.experimental.rnn.lstm``'s signature over ``lstm_ref``: the packed ``weights``
    unpacked by JAX's own ``unpack_lstm_weights``, so the packing is tested, not assumed."""
    unpacked = jax_rnn.unpack_lstm_weights(
        weights, input_size, hidden_size, num_layers, bidirectional
    )
    return jax_rnn.lstm_ref(
        x, h_0, c_0, *unpacked, seq_lengths, input_size, hidden_size, num_layers, dropout,
        bidirectional,
    )  # fmt: skip


class Kernel(NamedTuple):
    """The LSTM kernel and why it cannot run here.

    Attributes:
      lstm: ``jax.experimental.rnn.lstm``'s signature: ``(x [B, T, I], h_0 [L*D, B, H],
        c_0, weights [n], seq_lengths int32 [B], input_size, hidden_size, num_layers,
        dropout, bidirectional) -> (y [B, T, D*H], h_n, c_n)``.
      refusal: ``() -> str | None``, why it cannot run on this machine.
    """

    lstm: Callable[..., tuple[Array, Array, Array]]
    refusal: Callable[[], str | None]


KERNEL = Kernel(jax_rnn.lstm, cuda_refusal)
"""What ``backend="cudnn"`` calls: cuDNN's LSTM, on a CUDA GPU."""

REFERENCE = Kernel(reference_lstm, lambda: None)
"""JAX's reference LSTM on the same packed weights, on any device (for tests)."""


# --- What cuDNN serves ----------------------------------------------------------------------


def auto_backend() -> Literal["xla", "cudnn"]:
    """What ``backend="auto"`` runs: ``"xla"`` on every device until a device run shows
    cuDNN faster for the LSTM (none has yet: benchmarks/README.md, "Device check")."""
    return "xla"


def _settings_refusal(settings: LayerSettings) -> str | None:
    unroll = settings.unroll
    if settings.remat:
        return f"remat={settings.remat!r} (cuDNN keeps its own activations for the backward pass)"
    if isinstance(unroll, bool) or unroll != 1:
        return f"unroll={unroll!r} (cuDNN runs its own loop)"
    if settings.hoist_projection is not None:
        return f"hoist_projection={settings.hoist_projection!r} (cuDNN projects the inputs itself)"
    if settings.recurrent_dropout > 0:
        return (
            f"recurrent_dropout={settings.recurrent_dropout} (cuDNN's LSTM has no recurrent mask)"
        )
    if settings.compute_dtype is not None:
        dtype = jnp.dtype(settings.compute_dtype).name
        return f"compute_dtype={dtype} (cuDNN's LSTM runs float32 only here)"
    return None


def _cell_refusal(cell: Cell) -> str | None:
    kernel = kernel_of(cell)
    if kernel == "lstm":
        return None
    if kernel == "peephole_lstm":
        return "the cell is a peephole LSTM (cuDNN's LSTM has no peepholes)"
    return (
        "the cell is not a plain rnnjax.lstm (cuDNN runs the LSTM without peepholes only; not"
        " another kind, a derived cell or a cell of your own)"
    )


def refusal(cell: Cell, settings: LayerSettings) -> str | None:
    """Why cuDNN cannot run ``cell`` under ``settings`` here (the first reason), or ``None``."""
    return _settings_refusal(settings) or _cell_refusal(cell) or KERNEL.refusal()


def inputs_refusal(
    params: Params, xs: Any, initial_carry: Carry | None, resets: Any = None
) -> str | None:
    """Why cuDNN cannot run on these arguments (resets; a dtype other than float32)."""
    if resets is not None:
        return "resets (cuDNN's LSTM cannot restart a sequence part way)"
    arrays = {"xs": xs, "params": params, "initial_carry": initial_carry}
    for name, tree in arrays.items():
        for leaf in jax.tree.leaves(tree):
            dtype = jnp.result_type(leaf)
            if dtype != jnp.float32:
                return f"{name} of dtype {dtype.name} (cuDNN's LSTM runs float32 only here)"
    return None


def uses_cudnn(cell: Cell, settings: LayerSettings) -> bool:
    """Whether a checked ``settings`` runs ``cell`` through cuDNN; ``"auto"`` asks
    :func:`auto_backend` and, should that say cuDNN, falls back to XLA where it cannot serve."""
    backend: str = settings.backend
    if backend == "auto":
        backend = auto_backend()
        if backend == "cudnn" and refusal(cell, settings) is not None:
            return False
    return backend == "cudnn"


def cannot_serve(where: str, reason: str) -> ValueError:
    return ValueError(f'{where}: backend="cudnn" cannot serve: {reason}')


def check_backend(where: str, cell: Cell, settings: LayerSettings) -> None:
    """At construction: ``backend="cudnn"`` with a cell, setting or machine it cannot serve."""
    if settings.backend == "cudnn":
        reason = refusal(cell, settings)
        if reason is not None:
            raise cannot_serve(where, reason)


def check_backend_inputs(
    where: str,
    settings: LayerSettings,
    params: Params,
    xs: Any,
    initial_carry: Carry | None,
    resets: Any = None,
) -> None:
    """At a call: ``backend="cudnn"`` with arguments it cannot serve."""
    if settings.backend == "cudnn":
        reason = inputs_refusal(params, xs, initial_carry, resets)
        if reason is not None:
            raise cannot_serve(where, reason)


# --- Packing and the call -------------------------------------------------------------------


def pack_weights(pseudo_layers: Sequence[Params]) -> Array:
    """cuDNN's flat weights from :class:`~rnnjax.LSTMParams`, one per pseudo-layer in cuDNN's
    order (layer 0 forward, layer 0 backward, layer 1 forward, ...): every ``W_ih [4H, I]``
    and ``W_hh [4H, H]`` (the kernels transposed; gates i, f, g, o in both layouts), then
    every ``b_ih`` (the cell's one bias) and ``b_hh`` (zeros)."""
    matrices = [
        matrix.T.ravel()
        for params in pseudo_layers
        for matrix in (params.kernel, params.recurrent_kernel)
    ]
    biases = [b for params in pseudo_layers for b in (params.bias, jnp.zeros_like(params.bias))]
    return jnp.concatenate(matrices + biases)


def flip_valid(xs: Array, lengths: Array) -> Array:
    """``xs [B, T, ...]`` with each sequence's first ``lengths[b]`` steps reversed in place
    and its padding where it was (its own inverse)."""
    time = xs.shape[1]
    steps = jnp.arange(time)[None, :]
    index = jnp.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return jnp.take_along_axis(xs, index.reshape(index.shape + (1,) * (xs.ndim - 2)), axis=1)


def lstm_layers(
    pseudo_layers: Sequence[Params],
    xs: Array,
    h_0: Array,
    c_0: Array,
    lengths: Array,
    bidirectional: bool,
) -> tuple[Array, Array, Array]:
    """cuDNN's LSTM over ``xs [B, T, I]``, with :func:`rnnjax.rnn`'s meaning of lengths.

    Args:
      pseudo_layers: one :class:`~rnnjax.LSTMParams` per layer and direction, in cuDNN's
        order (forward, then backward, per layer).
      xs: batch-first inputs, zero past each length.
      h_0, c_0: ``[layers * directions, B, H]``.
      lengths: int ``[B]``, each in ``[0, T]``.
      bidirectional: the pseudo-layers pair up as directions of each layer; a layer reads
        the previous one's outputs, forward and backward concatenated.

    Returns:
      ``(ys [B, T, directions * H], h_n, c_n)``: zero past each length; where a length is 0,
      the final carry is the initial one (cuDNN runs such a row for one step, discarded).
    """
    directions = 2 if bidirectional else 1
    hidden = h_0.shape[-1]
    batch, time = xs.shape[:2]
    if batch == 0 or time == 0:
        return jnp.zeros((batch, time, directions * hidden), xs.dtype), h_0, c_0
    lengths = lengths.astype(jnp.int32)
    ys, h_n, c_n = KERNEL.lstm(
        xs, h_0, c_0, pack_weights(pseudo_layers), jnp.maximum(lengths, 1), xs.shape[-1],
        hidden, len(pseudo_layers) // directions, 0.0, bidirectional,
    )  # fmt: skip
    valid = jnp.arange(time)[None, :] < lengths[:, None]
    empty = (lengths == 0)[None, :, None]
    ys = jnp.where(valid[..., None], ys, 0)
    return ys, jnp.where(empty, h_0, h_n), jnp.where(empty, c_0, c_n)


def cudnn_scan(
    params: Params,
    inputs: Array,
    initial_carry: Carry,
    seq_lengths: Array | None,
    reverse: bool,
) -> tuple[Carry, Array]:
    """:func:`rnnjax.rnn`'s run of a plain LSTM by cuDNN: ``inputs [time, *batch, I]`` (padding
    zeroed), the checked ``initial_carry`` (an ``LSTMState``) and lengths ``[*batch]``;
    returns ``(final_carry, ys [time, *batch, H])``."""
    time, batch_shape = inputs.shape[0], inputs.shape[1:-1]
    rows = math.prod(batch_shape)
    xs = jnp.moveaxis(inputs, 0, -2).reshape(rows, time, inputs.shape[-1])
    h_0, c_0 = (leaf.reshape(1, rows, -1) for leaf in jax.tree.leaves(initial_carry))
    lengths = jnp.full((rows,), time) if seq_lengths is None else seq_lengths.reshape(rows)
    if reverse:
        xs = flip_valid(xs, lengths)
    ys, h_n, c_n = lstm_layers([params], xs, h_0, c_0, lengths, bidirectional=False)
    if reverse:
        ys = flip_valid(ys, lengths)
    carry = jax.tree.unflatten(
        jax.tree.structure(initial_carry),
        [h_n[0].reshape(*batch_shape, -1), c_n[0].reshape(*batch_shape, -1)],
    )
    ys = jnp.moveaxis(ys.reshape(*batch_shape, time, -1), -2, 0)
    return carry, ys
