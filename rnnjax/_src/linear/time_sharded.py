"""``linear_recurrence`` with the time axis split across devices, for sequences too long for one.

Each device runs the recurrence over its chunk of time from a zero state (``h0``), and over the
same chunk the running product of ``a`` (``P``, the recurrence with ``b = 0`` from one). The
chunks' summaries, the last ``h0`` and ``P`` of each, are small (``[devices, *batch, n]``):
every device gathers them and runs the recurrence across chunks, which gives the state that
enters each chunk, ``c``; then ``h_t = h0_t + P_t * c`` inside the chunk, as
recurrentgemma's ``multi_shard_correction``. Only the summaries cross devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rnnjax._src.core.checks import check_seq_lengths
from rnnjax._src.linear.recurrence import Method, _recurrence, default_method

Array = jax.Array


def _chunk(
    a: Array, b: Array, initial: Array, *, axis_name: str, reverse: bool, method: Method
) -> tuple[Array, Array]:
    """One device's chunk ``a, b [time / devices, *batch, n]``: ``(final, hs)`` of the whole
    recurrence; ``final [1, *batch, n]``, the same on every device."""
    zeros, ones = jnp.zeros_like(a[0]), jnp.ones_like(a[0])  # like a: varying over devices
    _, h0 = _recurrence(a, b, zeros, reverse, method)
    _, products = _recurrence(a, jnp.zeros_like(b), ones, reverse, method)
    last = 0 if reverse else -1  # the chunk's last step processed
    gathered = jax.lax.all_gather((products[last], h0[last]), axis_name)

    def across(carry: Array, summary: tuple[Array, Array]) -> tuple[Array, Array]:
        product, h = summary
        return product * carry + h, carry  # emits the state entering this chunk

    initial = jax.lax.pcast(initial, (axis_name,), to="varying")  # as gathered is typed
    final, entering = jax.lax.scan(across, initial, gathered, reverse=reverse)
    return final[None], h0 + products * entering[jax.lax.axis_index(axis_name)][None]


def time_sharded_linear_recurrence(
    a: Array,
    b: Array,
    mesh: Mesh,
    *,
    axis_name: str | None = None,
    initial: Array | None = None,
    seq_lengths: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    method: Method | None = None,
) -> tuple[Array, Array]:
    r""":func:`rnnjax.linear_recurrence` with the time axis split across a mesh axis.

    ``h_t = a_t * h_{t-1} + b_t`` for a sequence too long for one device: device ``k`` of
    the ``axis_name`` axis scans time chunk ``k`` from a zero state and also keeps the running
    product of its ``a``; the chunks' last states and products (``[devices, *batch, n]``) are
    gathered, the state entering each chunk follows by the same recurrence across chunks, and
    each device corrects its chunk, ``h_t = h0_t + (\prod_{s \le t} a_s) c_{\text{chunk}}``.
    The result (values and gradients) equals ``linear_recurrence`` to rounding; ``hs`` comes
    back split along time the same way. Padding, reversal and ``initial`` are as there.

    Args:
      a, b: ``[*batch, time, n]`` (``[time, *batch, n]`` with ``time_major``), same shape;
        ``time`` must divide by the size of the mesh axis.
      mesh: the devices; ``axis_name`` (default: its first axis) splits time.
      initial, seq_lengths, reverse, time_major, method: as in ``linear_recurrence``
        (``method`` is the scan inside each chunk).

    Returns:
      ``(final, hs)`` as ``linear_recurrence`` returns them.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> mesh = jax.make_mesh((len(jax.devices()),), ("time",))  # on 1, 2, 4 or 8 devices
      >>> a, b = jnp.full((1, 8, 1), 0.5), jnp.ones((1, 8, 1))
      >>> final, hs = rnnjax.time_sharded_linear_recurrence(a, b, mesh)
      >>> bool(jnp.allclose(hs, rnnjax.linear_recurrence(a, b)[1]))
      True
    """
    where = "rnnjax.time_sharded_linear_recurrence"
    axis_name = mesh.axis_names[0] if axis_name is None else axis_name
    if axis_name not in mesh.axis_names:
        raise ValueError(f"{where}: axis_name must be one of {mesh.axis_names}; got {axis_name!r}")
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(
            f"{where}: a and b must have the same shape [*batch, time, n]; got a {a.shape},"
            f" b {b.shape}"
        )
    time_axis = 0 if time_major else a.ndim - 2
    devices = mesh.shape[axis_name]
    if a.shape[time_axis] % devices:
        raise ValueError(
            f"{where}: the time axis ({a.shape[time_axis]}) must divide by the size of mesh axis"
            f" {axis_name!r} ({devices}); got a of shape {a.shape}"
        )
    a, b = jnp.moveaxis(a, time_axis, 0), jnp.moveaxis(b, time_axis, 0)
    dtype = jnp.result_type(a, b, *([] if initial is None else [initial]))
    initial = jnp.zeros(a.shape[1:], dtype) if initial is None else jnp.asarray(initial, dtype)
    a, b = a.astype(dtype), b.astype(dtype)
    valid = None
    if seq_lengths is not None:
        lengths = check_seq_lengths(seq_lengths, a.shape[1:-1], a.shape[0], where)
        steps = jnp.arange(a.shape[0]).reshape((-1,) + (1,) * (a.ndim - 2))
        valid = (steps < lengths[None])[..., None]
        a, b = jnp.where(valid, a, 1), jnp.where(valid, b, 0)  # padding keeps the state
    chunk = jax.shard_map(
        lambda a, b, initial: _chunk(
            a, b, initial, axis_name=axis_name, reverse=reverse, method=method or default_method()
        ),
        mesh=mesh,
        in_specs=(PartitionSpec(axis_name), PartitionSpec(axis_name), PartitionSpec()),
        out_specs=(PartitionSpec(axis_name), PartitionSpec(axis_name)),
    )
    split, whole = (
        NamedSharding(mesh, PartitionSpec(axis_name)),
        NamedSharding(mesh, PartitionSpec()),
    )
    a, b, initial = jax.device_put((a, b, initial), (split, split, whole))  # any mesh axis type
    finals, hs = chunk(a, b, initial)
    final = jax.device_put(finals, whole)[0]  # every device computed the same final state
    if valid is not None:
        hs = jnp.where(valid, hs, 0)
    return final, jnp.moveaxis(hs, 0, time_axis)
