"""Layers made of layers: :func:`bidirectional` pairs two, :func:`stack` runs several in turn.

Both return a :class:`~rnnjax.Layer` again, as ``optax.chain`` of transformations gives a
transformation, so they nest: a stack of bidirectional layers, a bidirectional stack.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src.core.contract import Carry, Layer, Params
from rnnjax._src.core.validate import check_rate
from rnnjax._src.layers.cudnn_fused import PAIRS, fused_bidirectional, fused_stack, run_fused
from rnnjax._src.layers.layer import keep_mask, require_key

Array = jax.Array
MERGE_MODES = ("concat", "sum", "mul", "ave", "none")


class BidirectionalParams(NamedTuple):
    """Parameters of :func:`bidirectional`: one pytree per direction."""

    forward: Params
    backward: Params


def _per_layer(where: str, what: str, count: int, initial_carry: Any) -> tuple[Any, ...]:
    """``initial_carry`` as one entry per layer (``None`` entries: the default)."""
    if initial_carry is None:
        return (None,) * count
    if isinstance(initial_carry, (tuple, list)) and len(initial_carry) == count:
        return tuple(initial_carry)
    raise ValueError(
        f"{where}: initial_carry must be {what}; got {jax.tree.structure(initial_carry)}"
    )


def merge_outputs(mode: str, forward: Any, backward: Any) -> Any:
    """Two directions' outputs merged: ``"concat"`` (last axis), ``"sum"``, ``"mul"``, ``"ave"``,
    or ``"none"`` for the pair."""
    if mode == "none":
        return forward, backward
    if mode == "concat":
        return jnp.concatenate([forward, backward], axis=-1)
    if forward.shape != backward.shape:
        raise ValueError(
            f"rnnjax.bidirectional: merge={mode!r} needs equal output shapes; got forward"
            f" {forward.shape} and backward {backward.shape}"
        )
    if mode == "sum":
        return forward + backward
    if mode == "mul":
        return forward * backward
    return (forward + backward) / 2


def check_merge(where: str, mode: Any) -> None:
    if mode not in MERGE_MODES:
        raise ValueError(f"{where}: merge must be one of {MERGE_MODES}; got {mode!r}")


def bidirectional(forward: Layer, backward: Layer | None = None, *, merge: str = "concat") -> Layer:
    """A forward and a backward layer over the same sequence, outputs merged (Keras's set).

    Under ``seq_lengths`` the backward layer reads each sequence's valid part only, from its
    last valid step back to step 0, as PyTorch's packed bidirectional RNNs do; both
    directions emit zeros past the length, so every merge does too.

    Args:
      forward: the forward layer, e.g. ``rnnjax.layer(rnnjax.lstm(32))``.
      backward: the backward layer, with its own params. Default ``forward.flip()``: the
        same kind of layer with ``reverse=True``.
      merge: ``"concat"`` (``ys [..., H_fwd + H_bwd]``), ``"sum"``, ``"mul"``, ``"ave"``, or
        ``"none"`` for the pair ``(ys_fwd, ys_bwd)``.

    Returns:
      A :class:`Layer` with :class:`BidirectionalParams`; ``initial_carry`` and the final
      carry are pairs ``(forward, backward)``, and ``key`` is split between the two.

    Raises:
      ValueError: for an unknown ``merge``, a forward layer with no ``flip`` and no
        ``backward``, and (at trace time) ``sum``/``mul``/``ave`` over unequal sizes.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> bi = rnnjax.bidirectional(rnnjax.layer(rnnjax.gru(8)))
      >>> params = bi.init(jax.random.key(0), 3)
      >>> (h_fwd, h_bwd), ys = bi.apply(params, jnp.ones((2, 5, 3)), seq_lengths=jnp.array([5, 3]))
      >>> ys.shape, h_bwd.shape
      ((2, 5, 16), (2, 8))
    """
    where = "rnnjax.bidirectional"
    check_merge(where, merge)
    if backward is None:
        if forward.flip is None:
            raise ValueError(
                f"{where}: forward has no flip(), so no default backward layer; pass backward="
            )
        backward = forward.flip()
    backward_layer = backward
    fused = fused_bidirectional(forward, backward_layer, merge)

    def init(key: Array, input_size: int) -> BidirectionalParams:
        forward_key, backward_key = jax.random.split(key)
        return BidirectionalParams(
            forward.init(forward_key, input_size), backward_layer.init(backward_key, input_size)
        )

    def apply(
        params: BidirectionalParams,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: tuple[Carry, Carry] | None = None,
        key: Array | None = None,
        deterministic: bool = True,
    ) -> tuple[tuple[Carry, Carry], Any]:
        carries = _per_layer(where, "a pair (forward, backward)", 2, initial_carry)
        if fused is not None:  # cuDNN LSTMs, one each way, concatenated: cuDNN's directions
            pair = [params], xs, [carries], seq_lengths, deterministic
            finals, ys = run_fused(where, fused, *pair)
            return finals[0], ys
        keys: Any = (None, None) if key is None else jax.random.split(key)
        common = dict(seq_lengths=seq_lengths, deterministic=deterministic)
        carry_f, ys_f = forward.apply(
            params.forward, xs, initial_carry=carries[0], key=keys[0], **common
        )
        carry_b, ys_b = backward_layer.apply(
            params.backward, xs, initial_carry=carries[1], key=keys[1], **common
        )
        return (carry_f, carry_b), merge_outputs(merge, ys_f, ys_b)

    if fused is not None:
        PAIRS[apply] = fused  # so a stack of such pairs runs as one call too
    return Layer(init, apply)


# --- stack ---------------------------------------------------------------------------------

_NOT_ONE_ARRAY = "not one array, so no layer can follow it (a bidirectional with merge='none'?)"


def _output_size(where: str, layer: Layer, params: Params, input_size: int, index: int) -> int:
    xs = jax.ShapeDtypeStruct((1, 1, input_size), jnp.float32)
    ys = jax.eval_shape(lambda p, x: layer.apply(p, x)[1], params, xs)
    if not isinstance(ys, jax.ShapeDtypeStruct):
        raise ValueError(
            f"{where}: layer {index} returns {jax.tree.structure(ys)}, {_NOT_ONE_ARRAY}"
        )
    return int(ys.shape[-1])


def _stack_init(
    where: str, layers: tuple[Layer, ...], residual: bool, key: Array, input_size: int
) -> tuple[Params, ...]:
    """Each layer's params, its input size the previous layer's output size."""
    params, size, depth = [], input_size, len(layers)
    for index, (item, item_key) in enumerate(
        zip(layers, jax.random.split(key, depth), strict=True)
    ):
        item_params = item.init(item_key, size)
        if index < depth - 1 or (residual and index > 0):
            output_size = _output_size(where, item, item_params, size, index)
            if residual and index > 0 and output_size != size:
                raise ValueError(
                    f"{where}: residual=True needs layer {index} to keep the size of its"
                    f" input; got input size {size} and output size {output_size}"
                )
            size = output_size
        params.append(item_params)
    return tuple(params)


def _between(where: str, index: int, xs: Any, rate: float, key: Array | None) -> Array:
    """What layer ``index > 0`` reads: the previous output, times a dropout mask
    ``[*batch, features]`` fixed over time when ``key`` is given."""
    if not isinstance(xs, jax.Array):
        raise ValueError(
            f"{where}: layer {index - 1} returns {jax.tree.structure(xs)}, {_NOT_ONE_ARRAY}"
        )
    if key is None:
        return xs
    mask = keep_mask(key, rate, (*xs.shape[:-2], xs.shape[-1]), xs.dtype)
    return xs * mask[..., None, :]


def _residual(where: str, index: int, ys: Any, xs: Array) -> Array:
    if getattr(ys, "shape", None) != xs.shape:
        raise ValueError(
            f"{where}: residual=True needs layer {index} to keep the shape of its"
            f" input; got input {xs.shape} and output {getattr(ys, 'shape', ys)}"
        )
    return ys + xs


def _check_layers(where: str, layers: tuple[Any, ...]) -> None:
    if not layers:
        raise ValueError(f"{where}: needs at least one layer; got none")
    for index, item in enumerate(layers):
        if not isinstance(item, Layer):
            raise TypeError(
                f"{where}: layer {index} must be a rnnjax.Layer (from rnnjax.layer,"
                f" bidirectional or stack); got {type(item).__name__}"
            )


def _check_per_layer_params(where: str, params: Any, depth: int) -> None:
    if not isinstance(params, (tuple, list)) or len(params) != depth:
        raise ValueError(
            f"{where}: params must be a tuple with one entry per layer ({depth}); got"
            f" {jax.tree.structure(params)}"
        )


def stack(*layers: Layer, dropout: float = 0.0, residual: bool = False) -> Layer:
    """Layers run one after another: PyTorch's ``num_layers`` with ``dropout``, any depth.

    Between layers (never after the last, as in PyTorch's multi-layer RNNs) ``dropout``
    zeroes features of each layer's output with kept entries scaled by ``1 / (1 - rate)``.
    The mask is variational like :func:`layer`'s: one per sequence, ``[*batch, features]``,
    fixed over time (Gal & Ghahramani 2016; PyTorch draws a fresh mask at every step), so
    every dropout mask in rnnjax is the same at every step and :func:`tbptt` in chunks
    equals one pass. With ``residual=True`` every layer after the first adds its input to
    its output (GNMT-style; ``ys_i = layer_i(dropout(x_i)) + x_i``), which needs each such
    layer to keep the size of its input.

    Args:
      *layers: one or more :class:`Layer`; each finds its input size from the previous one's
        output size (a bidirectional concat doubles it).
      dropout: rate between layers.
      residual: residual connections around every layer but the first.

    Returns:
      A :class:`Layer` whose params are a tuple with one entry per layer; ``initial_carry``
      (``None`` or a tuple, ``None`` entries meaning the default) and the final carry are
      tuples with one carry per layer. ``flip()`` flips every layer.

    Raises:
      ValueError: for no layers, a bad rate, and at init (or trace time) when
        ``residual=True`` meets a layer whose output size differs from its input size, or
        when ``params``/``initial_carry`` do not have one entry per layer.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> net = rnnjax.stack(
      ...     rnnjax.bidirectional(rnnjax.layer(rnnjax.lstm(8))),  # 3 -> 16 features
      ...     rnnjax.layer(rnnjax.gru(16)),                        # 16 -> 16
      ...     dropout=0.2, residual=True)
      >>> params = net.init(jax.random.key(0), 3)
      >>> carries, ys = net.apply(params, jnp.ones((2, 5, 3)))
      >>> ys.shape, len(carries)
      ((2, 5, 16), 2)
    """
    where = "rnnjax.stack"
    _check_layers(where, layers)
    check_rate(where, "dropout", dropout)
    fused = fused_stack(layers, dropout, residual)
    depth = len(layers)

    def init(key: Array, input_size: int) -> tuple[Params, ...]:
        return _stack_init(where, layers, residual, key, input_size)

    def apply(
        params: tuple[Params, ...],
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: tuple[Carry, ...] | None = None,
        key: Array | None = None,
        deterministic: bool = True,
    ) -> tuple[tuple[Carry, ...], Any]:
        _check_per_layer_params(where, params, depth)
        carries = _per_layer(
            where, f"a tuple with one carry per layer ({depth})", depth, initial_carry
        )
        if fused is not None:  # cuDNN LSTM layers (or pairs) alike: cuDNN's own layers
            finals, ys = run_fused(where, fused, params, xs, carries, seq_lengths, deterministic)
            return tuple(finals), ys
        dropping = not deterministic and dropout > 0 and depth > 1
        if dropping:
            require_key(where, key)
        keys: Any = [None] * (2 * depth) if key is None else jax.random.split(key, 2 * depth)
        finals = []
        for index, item in enumerate(layers):
            inputs = xs
            if index > 0:
                inputs = _between(
                    where, index, xs, dropout, keys[depth + index] if dropping else None
                )
            carry, ys = item.apply(
                params[index],
                inputs,
                seq_lengths=seq_lengths,
                initial_carry=carries[index],
                key=keys[index],
                deterministic=deterministic,
            )
            finals.append(carry)
            xs = _residual(where, index, ys, xs) if residual and index > 0 else ys
        return tuple(finals), xs

    flips = [item.flip for item in layers]

    def flip() -> Layer:
        return stack(*(f() for f in flips if f is not None), dropout=dropout, residual=residual)

    return Layer(init, apply, flip if all(f is not None for f in flips) else None)
