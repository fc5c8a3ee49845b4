"""The cuDNN backend (``backend="cudnn"``): packing, semantics, refusals.

On any machine, the kernel is swapped for ``jax.experimental.rnn.lstm_ref`` on the same packed
weights (``cudnn.REFERENCE``), so the packing, lengths (0 and full), reversal, initial carries,
directions and layers all run through the code the cuDNN call uses, and are compared with the
reference rnnjax path, ``backend="xla"``. The ``gpu``-marked tests compare the real cuDNN call
with ``backend="xla"`` on a CUDA GPU (skipped elsewhere, by conftest).
"""

import flax.nnx as nnx
import jax
import jax.experimental.rnn as jax_rnn
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax._src.cells.derived import with_compute_dtype
from rnnjax._src.scan import cudnn

H, F = 4, 3
LENGTHS = jnp.array([[6, 2], [0, 5]])  # batch [2, 2]: full, partial, zero


@pytest.fixture
def reference_kernel(monkeypatch):
    """cuDNN's LSTM replaced by JAX's reference on the same packed weights, on any device."""
    monkeypatch.setattr(cudnn, "KERNEL", cudnn.REFERENCE)


def _params(key, input_size=F, hidden=H):
    params = rnnjax.lstm(hidden).init(key, input_size)
    noise = jax.random.normal(jax.random.fold_in(key, 1), params.bias.shape) * 0.3
    return params._replace(bias=params.bias + noise)  # every gate's bias distinct


def _close(a, b, tol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=tol, atol=tol), a, b)


def test_packing_is_cudnn_layout():
    """pack_weights inverts JAX's own unpack_lstm_weights: W = kernel.T, b_ih = bias, b_hh = 0,
    pseudo-layers forward then backward per layer, input size 2H from layer 1 on."""
    keys = jax.random.split(jax.random.key(0), 4)
    layers = [_params(keys[0]), _params(keys[1]), _params(keys[2], 2 * H), _params(keys[3], 2 * H)]
    flat = cudnn.pack_weights(layers)
    assert flat.shape == (jax_rnn.get_num_params_in_lstm(F, H, 2, True),)
    w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(flat, F, H, 2, True)
    for index, params in enumerate(layers):
        np.testing.assert_array_equal(w_ih[index], params.kernel.T)
        np.testing.assert_array_equal(w_hh[index], params.recurrent_kernel.T)
        np.testing.assert_array_equal(b_ih[index], params.bias)
        np.testing.assert_array_equal(b_hh[index], np.zeros(4 * H))


def _loss(params, xs, carry, backend, **options):
    final, ys = rnnjax.rnn(
        rnnjax.lstm(H), params, xs, initial_carry=carry, backend=backend, **options
    )
    return jnp.sum(ys * jnp.cos(ys)) + jnp.sum(final.h * final.c) + jnp.sum(final.c)


def _batch(time_major):
    key = jax.random.key(2)
    xs = jax.random.normal(key, (2, 2, 6, F))
    xs = jnp.moveaxis(xs, -2, 0) if time_major else xs
    h, c = jax.random.normal(jax.random.fold_in(key, 1), (2, 2, 2, H)) * 0.5
    return xs, rnnjax.LSTMState(h, c)


CASES = {  # (reverse, time_major, lengths)
    "forward-batch-first-full": (False, False, None),
    "reverse-batch-first-lengths-0-partial-full": (True, False, LENGTHS),
    "forward-time-major-lengths-0-partial-full": (False, True, LENGTHS),
    "reverse-time-major-full": (True, True, None),
}


@pytest.mark.parametrize("case", CASES)
def test_rnn_matches_xla(reference_kernel, case):
    """Outputs, final carries and gradients (params, xs, initial carry) equal the XLA path's,
    with two batch axes, lengths 0 and full, reversal and either layout."""
    reverse, time_major, lengths = CASES[case]
    params = _params(jax.random.key(1))
    xs, carry = _batch(time_major)
    options = dict(seq_lengths=lengths, reverse=reverse, time_major=time_major)
    run = jax.jit(
        rnnjax.rnn, static_argnums=0, static_argnames=("reverse", "time_major", "backend")
    )
    got = run(rnnjax.lstm(H), params, xs, initial_carry=carry, backend="cudnn", **options)
    want = run(rnnjax.lstm(H), params, xs, initial_carry=carry, backend="xla", **options)
    _close(got, want)
    grad = jax.jit(
        jax.grad(_loss, argnums=(0, 1, 2)),
        static_argnums=3,
        static_argnames=("reverse", "time_major"),
    )
    _close(grad(params, xs, carry, "cudnn", **options), grad(params, xs, carry, "xla", **options))


def test_zero_length_keeps_the_initial_carry_and_padding_is_inert(reference_kernel):
    """A length-0 row returns its initial carry and zeros; NaN padding changes nothing."""
    params = _params(jax.random.key(1))
    xs, carry = _batch(time_major=False)
    xs = jnp.where(jnp.arange(6)[None, None, :, None] >= LENGTHS[..., None, None], jnp.nan, xs)
    final, ys = rnnjax.rnn(
        rnnjax.lstm(H), params, xs, initial_carry=carry, seq_lengths=LENGTHS, backend="cudnn"
    )
    np.testing.assert_array_equal(final.h[1, 0], carry.h[1, 0])
    np.testing.assert_array_equal(ys[1, 0], np.zeros((6, H)))
    grad = jax.jit(jax.grad(_loss, argnums=(0, 1)), static_argnums=3)
    grads = grad(params, xs, carry, "cudnn", seq_lengths=LENGTHS)
    assert all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(grads))


def _xla_bidirectional_stack(depth):
    layers = [rnnjax.bidirectional(rnnjax.layer(rnnjax.lstm(H))) for _ in range(depth)]
    return rnnjax.stack(*layers)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["one-way", "bidirectional"])
def test_layers_and_directions_match_xla(reference_kernel, bidirectional):
    """Two layers (and both directions) in one cuDNN call equal rnnjax's stack of layers
    (of bidirectional layers, concatenated), values and gradients."""
    directions = 2 if bidirectional else 1
    keys = jax.random.split(jax.random.key(3), 2 * directions)
    sizes = [F] * directions + [directions * H] * directions
    pseudo = [_params(key, size) for key, size in zip(keys, sizes, strict=True)]
    xs = jax.random.normal(jax.random.key(4), (3, 5, F))
    lengths = jnp.array([5, 0, 3])
    h_0, c_0 = jax.random.normal(jax.random.key(5), (2, 2 * directions, 3, H))

    def fused(pseudo, xs, h_0, c_0):
        return cudnn.lstm_layers(pseudo, xs, h_0, c_0, lengths, bidirectional)

    def composed(pseudo, xs, h_0, c_0):
        states = [rnnjax.LSTMState(h, c) for h, c in zip(h_0, c_0, strict=True)]
        if not bidirectional:
            layer = rnnjax.layer(rnnjax.lstm(H))
            finals, ys = rnnjax.stack(layer, layer).apply(
                tuple(pseudo), xs, seq_lengths=lengths, initial_carry=tuple(states)
            )
        else:
            params = (
                rnnjax.BidirectionalParams(*pseudo[:2]),
                rnnjax.BidirectionalParams(*pseudo[2:]),
            )
            carries = ((states[0], states[1]), (states[2], states[3]))
            finals, ys = _xla_bidirectional_stack(2).apply(
                params, xs, seq_lengths=lengths, initial_carry=carries
            )
        flat = jax.tree.leaves(finals, is_leaf=lambda x: isinstance(x, rnnjax.LSTMState))
        return ys, jnp.stack([s.h for s in flat]), jnp.stack([s.c for s in flat])

    fused, composed = jax.jit(fused), jax.jit(composed)
    _close(fused(pseudo, xs, h_0, c_0), composed(pseudo, xs, h_0, c_0))

    def loss(run):
        return lambda *a: sum(jnp.sum(jnp.sin(out)) for out in run(*a))

    args = (pseudo, xs, h_0, c_0)
    _close(
        jax.jit(jax.grad(loss(fused), argnums=(0, 1, 2, 3)))(*args),
        jax.jit(jax.grad(loss(composed), (0, 1, 2, 3)))(*args),
    )


@pytest.fixture
def kernel_calls(monkeypatch):
    """The reference kernel, recording ``(num_layers, bidirectional)`` of each call."""
    calls = []

    def counting(*args):
        calls.append((args[7], args[9]))
        return cudnn.reference_lstm(*args)

    monkeypatch.setattr(cudnn, "KERNEL", cudnn.Kernel(counting, lambda: None))
    return calls


def _cudnn_layer(**options):
    return rnnjax.layer(rnnjax.lstm(H), backend="cudnn", **options)


def _check_fused(fused, unfused, carries, calls, expected_calls):
    """One eager call records the kernel calls; values, carries and gradients (params, xs,
    initial carries) equal the layer-by-layer XLA composition's."""
    params = fused.init(jax.random.key(9), F)
    calls.clear()  # init traced the layers for their output sizes
    xs, _ = _batch(time_major=False)
    got = fused.apply(params, xs, seq_lengths=LENGTHS, initial_carry=carries)
    assert calls == expected_calls
    _close(got, unfused.apply(params, xs, seq_lengths=LENGTHS, initial_carry=carries))

    def loss(layer, params, xs, carries):
        finals, ys = layer.apply(params, xs, seq_lengths=LENGTHS, initial_carry=carries)
        return jnp.sum(jnp.sin(ys)) + _total(finals)

    grad = jax.jit(jax.grad(loss, argnums=(1, 2, 3)), static_argnums=0)
    _close(grad(fused, params, xs, carries), grad(unfused, params, xs, carries))


def test_bidirectional_runs_as_cudnns_two_directions(kernel_calls):
    """rnnjax.bidirectional of two cuDNN LSTM layers (concat, no input dropout) is one cuDNN
    call with both directions; with input dropout (a mask per direction), one per direction."""
    _, carry = _batch(time_major=False)
    carries = (carry, jax.tree.map(lambda a: -a, carry))
    fused = rnnjax.bidirectional(_cudnn_layer())
    unfused = rnnjax.bidirectional(rnnjax.layer(rnnjax.lstm(H)))
    _check_fused(fused, unfused, carries, kernel_calls, [(1, True)])
    kernel_calls.clear()
    dropping = rnnjax.bidirectional(_cudnn_layer(dropout=0.2))
    params = dropping.init(jax.random.key(0), F)
    dropping.apply(params, jnp.ones((2, 5, F)), key=jax.random.key(0), deterministic=False)
    assert kernel_calls == [(1, False), (1, False)]


def test_stacks_run_as_cudnns_layers(kernel_calls):
    """A stack of cuDNN LSTM layers, or of such bidirectional pairs, is one call with cuDNN's
    own layers; with dropout between the layers, one call per layer."""
    _, carry = _batch(time_major=False)
    fused = rnnjax.stack(_cudnn_layer(), _cudnn_layer())
    unfused = rnnjax.stack(rnnjax.layer(rnnjax.lstm(H)), rnnjax.layer(rnnjax.lstm(H)))
    _check_fused(fused, unfused, (carry, None), kernel_calls, [(2, False)])
    kernel_calls.clear()
    pairs = rnnjax.stack(rnnjax.bidirectional(_cudnn_layer()), rnnjax.bidirectional(_cudnn_layer()))
    _check_fused(pairs, _xla_bidirectional_stack(2), None, kernel_calls, [(2, True)])
    kernel_calls.clear()
    dropping = rnnjax.stack(_cudnn_layer(), _cudnn_layer(), dropout=0.3)
    params = dropping.init(jax.random.key(0), F)
    kernel_calls.clear()
    dropping.apply(params, jnp.ones((2, 5, F)), key=jax.random.key(0), deterministic=False)
    assert kernel_calls == [(1, False), (1, False)]


def test_reversed_layers_stack_one_call_each(kernel_calls):
    """A stack of reversed cuDNN layers is not cuDNN's stack (its layers run forward)."""
    backwards = _cudnn_layer(reverse=True)
    unfused = rnnjax.stack(
        rnnjax.layer(rnnjax.lstm(H), reverse=True), rnnjax.layer(rnnjax.lstm(H), reverse=True)
    )
    _check_fused(rnnjax.stack(backwards, backwards), unfused, None, kernel_calls, [(1, False)] * 2)


def test_nnx_stacked_module_is_one_call(kernel_calls):
    xs = jax.random.normal(jax.random.key(8), (2, 5, F))
    module = rnnjax.nnx.LSTM(F, H, rngs=nnx.Rngs(0), backend="cudnn", num_layers=3)
    kernel_calls.clear()  # init traced the layers for their output sizes
    module(xs)
    assert kernel_calls == [(3, False)]


def test_nnx_bidirectional_module_is_one_call_and_matches_xla(kernel_calls):
    xs = jax.random.normal(jax.random.key(8), (2, 5, F))
    lengths = jnp.array([5, 0])

    def module(backend):
        rngs = nnx.Rngs(0)
        inner = rnnjax.nnx.LSTM(F, H, rngs=rngs, backend=backend, return_sequences=True)
        return rnnjax.nnx.Bidirectional(inner, rngs=rngs)

    fused, unfused = module("cudnn"), module("xla")
    kernel_calls.clear()
    got = fused(xs, seq_lengths=lengths)
    assert kernel_calls == [(1, True)]
    _close(got, unfused(xs, seq_lengths=lengths))


def test_fused_stack_checks_its_layers(reference_kernel):
    """The fused run checks what the layers would: here, params of the wrong input size."""
    layers = rnnjax.stack(_cudnn_layer(), _cudnn_layer())
    params = layers.init(jax.random.key(0), F)
    wrong = (params[0], _params(jax.random.key(1), input_size=F))
    with pytest.raises(ValueError, match=r"rnnjax.stack: layer 1 reads the previous layer's 4"):
        layers.apply(wrong, jnp.ones((2, 5, F)))


def _total(tree):
    return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree))


def test_layer_with_input_dropout_matches_xla(reference_kernel):
    """rnnjax.layer(backend="cudnn") takes input dropout (its mask is applied before the
    scan): the same key gives the XLA layer's outputs."""
    params = _params(jax.random.key(1))
    xs = jax.random.normal(jax.random.key(6), (2, 5, F))
    call = dict(key=jax.random.key(7), deterministic=False, seq_lengths=jnp.array([5, 3]))
    got = rnnjax.layer(rnnjax.lstm(H), dropout=0.3, backend="cudnn").apply(params, xs, **call)
    want = rnnjax.layer(rnnjax.lstm(H), dropout=0.3, backend="xla").apply(params, xs, **call)
    _close(got, want)


def test_nnx_module_matches_xla(reference_kernel):
    """The backend flows from the settings into the modules: nnx.LSTM(backend="cudnn")."""
    xs = jax.random.normal(jax.random.key(8), (2, 5, F))
    options = dict(return_sequences=True, return_state=True, num_layers=2)
    got = rnnjax.nnx.LSTM(F, H, rngs=nnx.Rngs(0), backend="cudnn", **options)(xs)
    want = rnnjax.nnx.LSTM(F, H, rngs=nnx.Rngs(0), backend="xla", **options)(xs)
    _close(got, want)


def test_auto_is_xla():
    """ "auto" runs the XLA path today (bit for bit), and quietly so where cuDNN cannot serve."""
    params = _params(jax.random.key(1))
    xs = jax.random.normal(jax.random.key(6), (2, 5, F))
    auto = rnnjax.rnn(rnnjax.lstm(H), params, xs)
    _close(auto, rnnjax.rnn(rnnjax.lstm(H), params, xs, backend="xla"), tol=0)
    gru = rnnjax.gru(H)
    rnnjax.rnn(gru, gru.init(jax.random.key(0), F), xs, backend="auto", remat=True)


def _custom_cell():
    inner = rnnjax.lstm(H)
    return rnnjax.Cell(inner.init, inner.initial_carry, inner.step, inner.input_size, inner.output)


REFUSED_SETTINGS = {
    "remat": (dict(remat=True), r"remat=True \(cuDNN keeps its own"),
    "unroll": (dict(unroll=2), r"unroll=2 \(cuDNN runs its own loop"),
    "unroll-full": (dict(unroll=True), r"unroll=True"),
    "hoist_projection": (dict(hoist_projection=True), r"hoist_projection=True"),
}


@pytest.mark.parametrize("name", REFUSED_SETTINGS)
def test_rnn_refuses_settings_by_name(reference_kernel, name):
    options, message = REFUSED_SETTINGS[name]
    params = _params(jax.random.key(1))
    with pytest.raises(ValueError, match=r'rnnjax.rnn: backend="cudnn" cannot serve: ' + message):
        rnnjax.rnn(rnnjax.lstm(H), params, jnp.ones((2, 5, F)), backend="cudnn", **options)
    rnnjax.rnn(rnnjax.lstm(H), params, jnp.ones((2, 5, F)), backend="auto", **options)


REFUSED_LAYERS = {
    "recurrent_dropout": (
        dict(recurrent_dropout=0.25),
        r"recurrent_dropout=0.25 \(cuDNN's LSTM has no",
    ),
    "compute_dtype": (
        dict(compute_dtype=jnp.bfloat16),
        r"compute_dtype=bfloat16 \(cuDNN's LSTM runs float32",
    ),
    "remat-segments": (dict(remat="segments"), r"remat='segments'"),
}


@pytest.mark.parametrize("name", REFUSED_LAYERS)
def test_layer_refuses_settings_by_name(reference_kernel, name):
    options, message = REFUSED_LAYERS[name]
    with pytest.raises(ValueError, match=r'rnnjax.layer: backend="cudnn" cannot serve: ' + message):
        rnnjax.layer(rnnjax.lstm(H), backend="cudnn", **options)
    rnnjax.layer(rnnjax.lstm(H), backend="auto", **options)


REFUSED_CELLS = {
    "gru": (lambda: rnnjax.gru(H), "not a plain rnnjax.lstm"),
    "peephole": (lambda: rnnjax.lstm(H, peephole=True), "a peephole LSTM"),
    "layer_norm_lstm": (lambda: rnnjax.layer_norm_lstm(H), "not a plain rnnjax.lstm"),
    "derived": (lambda: with_compute_dtype(rnnjax.lstm(H), jnp.dtype(jnp.bfloat16)), "not a plain"),
    "custom": (_custom_cell, "not a plain rnnjax.lstm"),
}


@pytest.mark.parametrize("name", REFUSED_CELLS)
def test_refuses_other_cells_by_name(reference_kernel, name):
    make, message = REFUSED_CELLS[name]
    cell = make()
    params = cell.init(jax.random.key(0), F)
    with pytest.raises(
        ValueError, match=r'rnnjax.rnn: backend="cudnn" cannot serve: the cell is ' + message
    ):
        rnnjax.rnn(cell, params, jnp.ones((2, 5, F)), backend="cudnn")
    rnnjax.rnn(cell, params, jnp.ones((2, 5, F)), backend="auto")


def test_refuses_arguments_by_name(reference_kernel):
    """resets, and a dtype other than float32 (xs, params, initial carry)."""
    cell, params = rnnjax.lstm(H), _params(jax.random.key(1))
    xs = jnp.ones((2, 5, F))
    prefix = r'rnnjax.rnn: backend="cudnn" cannot serve: '
    with pytest.raises(ValueError, match=prefix + r"resets \(cuDNN's LSTM cannot restart"):
        rnnjax.rnn(cell, params, xs, resets=jnp.zeros((2, 5), bool), backend="cudnn")
    with pytest.raises(ValueError, match=prefix + "xs of dtype bfloat16"):
        rnnjax.rnn(cell, params, xs.astype(jnp.bfloat16), backend="cudnn")
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    with pytest.raises(ValueError, match=prefix + "params of dtype bfloat16"):
        rnnjax.rnn(cell, half, xs, backend="cudnn")
    carry = rnnjax.LSTMState(jnp.zeros((2, H), jnp.float16), jnp.zeros((2, H), jnp.float16))
    with pytest.raises(ValueError, match=prefix + "initial_carry of dtype float16"):
        rnnjax.rnn(cell, params, xs, initial_carry=carry, backend="cudnn")
    module = rnnjax.nnx.LSTM(F, H, rngs=nnx.Rngs(0), backend="cudnn", param_dtype=jnp.bfloat16)
    with pytest.raises(
        ValueError, match=r'rnnjax.nnx.LSTM: backend="cudnn" cannot serve: params of'
    ):
        module(xs)


def test_refuses_without_a_cuda_gpu():
    """On a machine without a CUDA GPU (this one, unless a GPU is lent), asked for by name."""
    reason = cudnn.cuda_refusal()
    if reason is None:
        assert jax.default_backend() == "gpu"
        return
    params = _params(jax.random.key(1))
    message = r"backend=\"cudnn\" cannot serve: no CUDA GPU \(jax.default_backend\(\) is"
    with pytest.raises(ValueError, match="rnnjax.rnn: " + message):
        rnnjax.rnn(rnnjax.lstm(H), params, jnp.ones((2, 5, F)), backend="cudnn")
    with pytest.raises(ValueError, match="rnnjax.linen.LSTM: " + message):
        rnnjax.linen.LSTM(H, backend="cudnn").init(jax.random.key(0), jnp.ones((2, 5, F)))
    with pytest.raises(
        ValueError, match=r"rnnjax.rnn: backend must be one of \('auto', 'xla', 'cudnn'\)"
    ):
        rnnjax.rnn(rnnjax.lstm(H), params, jnp.ones((2, 5, F)), backend="gpu")


# --- On a CUDA GPU: the real cuDNN call against the XLA path --------------------------------

GPU_TOL = 2e-4  # float32 matmuls at "highest" precision on both paths


@pytest.mark.gpu
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_gpu_rnn_matches_xla(reverse):
    params = _params(jax.random.key(1))
    xs, carry = _batch(time_major=False)
    options = dict(seq_lengths=LENGTHS, reverse=reverse)
    with jax.default_matmul_precision("highest"):
        got = rnnjax.rnn(
            rnnjax.lstm(H), params, xs, initial_carry=carry, backend="cudnn", **options
        )
        want = rnnjax.rnn(rnnjax.lstm(H), params, xs, initial_carry=carry, backend="xla", **options)
        _close(got, want, GPU_TOL)
        grad = jax.grad(_loss, argnums=(0, 1, 2))
        _close(
            grad(params, xs, carry, "cudnn", **options),
            grad(params, xs, carry, "xla", **options),
            GPU_TOL,
        )


@pytest.mark.gpu
def test_gpu_layers_and_directions_match_xla():
    """cuDNN's own two bidirectional layers against rnnjax's stack of bidirectional layers."""
    keys = jax.random.split(jax.random.key(3), 4)
    pseudo = [_params(key, size) for key, size in zip(keys, [F, F, 2 * H, 2 * H], strict=True)]
    xs = jax.random.normal(jax.random.key(4), (3, 5, F))
    lengths = jnp.array([5, 0, 3])
    zeros = jnp.zeros((4, 3, H))
    with jax.default_matmul_precision("highest"):
        ys, h_n, _ = cudnn.lstm_layers(pseudo, xs, zeros, zeros, lengths, True)
        params = (rnnjax.BidirectionalParams(*pseudo[:2]), rnnjax.BidirectionalParams(*pseudo[2:]))
        finals, want = _xla_bidirectional_stack(2).apply(params, xs, seq_lengths=lengths)
    _close(ys, want, GPU_TOL)
    _close(h_n[3], finals[1][1].h, GPU_TOL)
    pair = rnnjax.bidirectional(rnnjax.layer(rnnjax.lstm(H), backend="cudnn"))
    with jax.default_matmul_precision("highest"):
        got = pair.apply(params[0], xs, seq_lengths=lengths)
        want = _xla_bidirectional_stack(1).apply((params[0],), xs, seq_lengths=lengths)
    _close(got[1], want[1], GPU_TOL)
    _close(got[0], want[0][0], GPU_TOL)


@pytest.mark.gpu
def test_gpu_nnx_module_matches_xla():
    xs = jax.random.normal(jax.random.key(8), (2, 5, F))
    lengths = jnp.array([5, 2])
    with jax.default_matmul_precision("highest"):
        got = rnnjax.nnx.LSTM(F, H, rngs=nnx.Rngs(0), backend="cudnn")(xs, seq_lengths=lengths)
        want = rnnjax.nnx.LSTM(F, H, rngs=nnx.Rngs(0), backend="xla")(xs, seq_lengths=lengths)
    _close(got, want, GPU_TOL)
