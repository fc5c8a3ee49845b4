"""Data parallelism over the devices of one process or of many, on JAX's own runtime.

Every process runs the same program (JAX's multi-controller model): after
``jax.distributed.initialize()``, ``jax.devices()`` lists the devices of all processes, a
:class:`~jax.sharding.Mesh` over them is global, and a jitted step over global arrays runs as
one computation whose collectives (the gradient all-reduce) cross processes. What differs per
process is only which rows of each global batch it loads, and who writes the output files.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Array = jax.Array
Batch = Any


def data_parallel_mesh(devices: Any = None, axis_name: str = "data") -> Mesh:
    """A one-axis :class:`~jax.sharding.Mesh` over ``devices`` (default: all of them).

    With several processes (``jax.distributed.initialize()`` called first), ``jax.devices()``
    lists the devices of every process, grouped by process in process order, so the default
    mesh spans them all and process ``p`` holds the ``p``-th contiguous block of every batch
    split along it. Each process then builds the global batch from its own rows with
    :func:`global_batch` (``fit(..., mesh=mesh)`` does so itself); :func:`shard_batch`
    splits a batch that every process holds whole.

    Example:
      >>> import jax, rnnjax.training
      >>> mesh = rnnjax.training.data_parallel_mesh()
      >>> mesh.axis_names, mesh.devices.size == len(jax.devices())
      (('data',), True)
    """
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (axis_name,))


def _batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def _check_divides(entry: str, what: str, rows: int, devices: int, shape: Any) -> None:
    if rows % devices:
        raise ValueError(
            f"rnnjax.training.{entry}: the batch axis ({rows}) must divide by the number of"
            f" {what} ({devices}); got an array of shape {shape}"
        )


def shard_batch(batch: Batch, mesh: Mesh) -> Batch:
    """Splits every array of ``batch`` along its leading (example) axis across ``mesh``.

    ``batch`` is the whole global batch; with several processes each must pass the same one
    (JAX checks). To load only this process's rows, use :func:`global_batch`.

    Raises:
      ValueError: if a leading axis does not divide evenly by the number of devices.

    Example:
      >>> import jax.numpy as jnp, rnnjax.training
      >>> mesh = rnnjax.training.data_parallel_mesh()
      >>> batch = rnnjax.training.shard_batch({"xs": jnp.ones((4, 3))}, mesh)
      >>> batch["xs"].shape, tuple(batch["xs"].sharding.spec)
      ((4, 3), ('data',))
    """
    sharding, devices = _batch_sharding(mesh), mesh.devices.size

    def place(array: Any) -> Array:
        _check_divides("shard_batch", "devices", np.shape(array)[0], devices, np.shape(array))
        return jax.device_put(array, sharding)

    return jax.tree.map(place, batch)


def global_batch(local_batch: Batch, mesh: Mesh) -> Batch:
    """The global batch, split across ``mesh``, from this process's rows of it.

    Each process passes its own rows (``[local_rows, ...]`` per array, the same number on every
    process, e.g. from :func:`epoch_batches`); the result has ``local_rows`` times the number of
    processes rows, process ``p``'s at block ``p``, each device holding its share.
    Built with :func:`jax.make_array_from_process_local_data`: no data crosses processes. On
    one process it is :func:`shard_batch`.

    Raises:
      ValueError: if ``local_rows`` does not divide by this process's devices in ``mesh``.

    Example:
      >>> import numpy as np, rnnjax.training
      >>> mesh = rnnjax.training.data_parallel_mesh()
      >>> batch = rnnjax.training.global_batch({"xs": np.ones((4, 3))}, mesh)
      >>> batch["xs"].shape, tuple(batch["xs"].sharding.spec)
      ((4, 3), ('data',))
    """
    sharding = _batch_sharding(mesh)
    local_devices = len(mesh.local_devices)

    def place(array: Any) -> Array:
        array = np.asarray(array)
        _check_divides(
            "global_batch", "this process's devices", array.shape[0], local_devices, array.shape
        )
        return jax.make_array_from_process_local_data(sharding, array)

    return jax.tree.map(place, local_batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a copy of every array of ``tree`` (params, a :class:`TrainState`) on each
    device of ``mesh``, across processes too; typed PRNG keys included.

    Every process must pass the same values (the same seed gives the same initial params).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.training
      >>> mesh = rnnjax.training.data_parallel_mesh()
      >>> tree = rnnjax.training.replicate({"w": jnp.ones(3), "key": jax.random.key(0)}, mesh)
      >>> tree["w"].sharding.is_fully_replicated, jax.dtypes.issubdtype(
      ...     tree["key"].dtype, jax.dtypes.prng_key)
      (True, True)
    """
    sharding = NamedSharding(mesh, PartitionSpec())

    def place(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = jax.device_put(jax.random.key_data(leaf), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return jax.device_put(leaf, sharding)

    return jax.tree.map(place, tree)


def is_primary() -> bool:
    """Whether this is process 0: the one that writes metrics rows, bars and messages."""
    return jax.process_index() == 0


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is set on any process (one small collective when there are several).

    Every process must call it at the same point of the program."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
