"""Every public path lowers for CPU, CUDA, ROCm and TPU, forward and gradient.

``jax.export`` lowers a jitted function for platforms this machine does not have, so CI on a
CPU guards the claim that the same code compiles for every device: for each path below, the
value and gradient of a loss are exported for all four platforms at once. A path that cannot
lower somewhere is listed in ``CANNOT_LOWER`` with the reason, and asserted to fail that way.
"""

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import pytest

import rnnjax
from rnnjax._src.cells.registry import CELL_KINDS, make_cell
from rnnjax._src.scan.cudnn import cuda_refusal

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
H, F, T = 3, 2, 4
XS = jnp.linspace(-1, 1, 2 * T * F).reshape(2, T, F)
LENGTHS = jnp.array([T, 2])


def _total(tree):
    return sum(
        jnp.sum(leaf) for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)
    )


def _rnn_path(kind, **options):
    cell = make_cell(kind, H)

    def loss(params, xs):
        return _total(rnnjax.rnn(cell, params, xs, seq_lengths=LENGTHS, **options))

    return loss, cell.init(jax.random.key(0), F)


def _layer_path(make_layer):
    layer = make_layer()

    def loss(params, xs):
        return _total(layer.apply(params, xs, seq_lengths=LENGTHS))

    return loss, layer.init(jax.random.key(0), F)


def _nnx_path():
    graph, params = nnx.split(rnnjax.nnx.LSTM(F, H, rngs=nnx.Rngs(0), return_sequences=True))

    def loss(params, xs):
        return _total(nnx.merge(graph, params)(xs, seq_lengths=LENGTHS))

    return loss, params


def _linen_path():
    module = rnnjax.linen.GRU(H, return_sequences=True)
    variables = module.init(jax.random.key(0), XS)

    def loss(variables, xs):
        return _total(module.apply(variables, xs, seq_lengths=LENGTHS))

    return loss, variables


def _decode_path():
    cell = rnnjax.lstm(H)
    params = {
        "cell": cell.init(jax.random.key(0), F),
        "embed": jnp.ones((5, F)),
        "out": jnp.ones((H, 5)),
    }

    def step(params, carry, tokens):
        carry, h = cell.step(params["cell"], carry, params["embed"][tokens])
        return carry, h @ params["out"]

    def loss(params, xs):
        carry = cell.initial_carry(params["cell"], 2)
        decoded = rnnjax.decode(step, params, carry, jnp.zeros(2, jnp.int32), max_length=3)
        return jnp.sum(decoded.scores) + jnp.sum(xs)

    return loss, params


def _recurrence_path(method):
    def loss(b, xs):
        return _total(
            rnnjax.linear_recurrence(
                jnp.tanh(xs), xs * b[None, None, :], seq_lengths=LENGTHS, method=method
            )
        )

    return loss, jnp.ones((F,))


def _time_sharded_path():
    mesh = jax.make_mesh((1,), ("time",))

    def loss(b, xs):
        return _total(
            rnnjax.time_sharded_linear_recurrence(jnp.tanh(xs), xs * b[None, None, :], mesh)
        )

    return loss, jnp.ones((F,))


def _paths():
    paths = {}
    for kind in CELL_KINDS:
        cell = make_cell(kind, H)
        paths[f"rnn-{kind}"] = lambda kind=kind: _rnn_path(kind)  # fused backward where it has one
        if cell.projection is not None:
            paths[f"rnn-{kind}-hoisted"] = lambda kind=kind: _rnn_path(kind, hoist_projection=True)
        if cell.linear_scan is not None:
            paths[f"rnn-{kind}-sequential"] = lambda kind=kind: _rnn_path(kind, parallel=False)
        if cell.diagonal_jacobian is not None:
            paths[f"rnn-{kind}-newton"] = lambda kind=kind: _rnn_path(kind, parallel="newton")
    paths["rnn-lstm-remat-unrolled"] = lambda: _rnn_path("lstm", remat=True, unroll=2)
    paths["rnn-gru-reset_before"] = lambda: _rnn_path_reset_before()
    paths["layer-bf16-remat-segments"] = lambda: _layer_path(
        lambda: rnnjax.layer(rnnjax.lstm(H), compute_dtype=jnp.bfloat16, remat="segments")
    )
    paths["bidirectional"] = lambda: _layer_path(
        lambda: rnnjax.bidirectional(rnnjax.layer(rnnjax.gru(H)))
    )
    paths["stack"] = lambda: _layer_path(
        lambda: rnnjax.stack(rnnjax.layer(rnnjax.lstm(H)), rnnjax.layer(rnnjax.min_gru(H)))
    )
    paths["nnx-LSTM"] = _nnx_path
    paths["linen-GRU"] = _linen_path
    paths["decode"] = _decode_path
    paths["linear_recurrence-sequential"] = lambda: _recurrence_path("sequential")
    paths["linear_recurrence-associative"] = lambda: _recurrence_path("associative")
    paths["time_sharded_linear_recurrence"] = _time_sharded_path
    return paths


def _rnn_path_reset_before():
    cell = rnnjax.gru(H, reset_after=False)

    def loss(params, xs):
        return _total(rnnjax.rnn(cell, params, xs, seq_lengths=LENGTHS))

    return loss, cell.init(jax.random.key(0), F)


PATHS = _paths()


@pytest.mark.parametrize("name", PATHS)
def test_lowers_everywhere(name):
    """The value and gradient (params and inputs) of the path export for all four platforms."""
    loss, params = PATHS[name]()
    exported = jax.export.export(
        jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), platforms=PLATFORMS
    )(params, XS)
    assert exported.platforms == PLATFORMS


CANNOT_LOWER = {
    # path: (platforms it cannot lower for, why)
    "rnn-lstm-cudnn": (
        ("cpu", "tpu"),
        "cuDNN runs on NVIDIA GPUs only: rnn(backend='cudnn') refuses where JAX's backend is"
        " not a CUDA GPU (a ROCm GPU included), and jax.experimental.rnn's primitives have no"
        " CPU or TPU lowering",
    ),
}


def test_cudnn_lowers_for_cuda_only():
    """The listed exception: ``backend="cudnn"``. Off a CUDA GPU it is refused at trace time
    (the kernel's shapes come from the CUDA plugin); on one, it exports for CUDA and not
    for the other platforms."""
    assert set(CANNOT_LOWER) == {"rnn-lstm-cudnn"}
    loss, params = _rnn_path("lstm", backend="cudnn")
    function = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    reason = cuda_refusal()
    if reason is not None:
        with pytest.raises(ValueError, match=r'backend="cudnn" cannot serve: no CUDA GPU'):
            jax.export.export(function, platforms=("cuda",))(params, XS)
        return
    jax.export.export(function, platforms=("cuda",))(params, XS)
    for platform in CANNOT_LOWER["rnn-lstm-cudnn"][0]:
        with pytest.raises(Exception, match=r"rnn_fwd|rnn_bwd|lowering"):
            jax.export.export(function, platforms=(platform,))(params, XS)
