"""``rnnjax.interop.from_torch`` / ``to_torch`` against live ``torch.nn.RNN/LSTM/GRU`` modules."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
import rnnjax.interop
from tests.peers import import_peer

BATCH, TIME, INPUT, HIDDEN = 4, 6, 3, 5
LENGTHS = np.array([TIME, 1, 4, 2])
ATOL = 2e-5
KINDS = {
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "rnn_tanh": ("RNN", {}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
}


@pytest.fixture(scope="module")
def torch():
    return import_peer("torch")


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
    with jax.default_matmul_precision("highest"):
        yield


def make_module(torch, kind, seed=0, **options):
    torch.manual_seed(seed)
    class_name, extra = KINDS[kind]
    module = getattr(torch.nn, class_name)(INPUT, HIDDEN, **extra, **options).eval()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.uniform_(-0.5, 0.5)  # nonzero biases, nothing at its default
    return module


def run_torch(torch, module, xs, lengths=None, initial_carry=None):
    """What a user gets from the module: padded outputs (zeros past each length), h_n/c_n."""
    nn_utils = torch.nn.utils.rnn
    x = torch.from_numpy(np.asarray(xs))
    with torch.no_grad():
        if lengths is None:
            out, state = module(x, initial_carry)
        else:
            packed = nn_utils.pack_padded_sequence(
                x, torch.from_numpy(lengths), batch_first=module.batch_first, enforce_sorted=False
            )
            out, state = module(packed, initial_carry)
            out, _ = nn_utils.pad_packed_sequence(
                out, batch_first=module.batch_first, total_length=TIME
            )
    return out.numpy(), jax.tree.map(lambda t: t.numpy(), state)


def inputs(module, lengths, seed=1):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(BATCH, TIME, INPUT)).astype(np.float32)
    if lengths is not None:
        xs[np.arange(TIME) >= lengths[:, None]] = np.nan  # padding the peer never reads
    return xs if module.batch_first else np.ascontiguousarray(xs.swapaxes(0, 1))


def initial_state(torch, module, kind, seed=2):
    layers = module.num_layers * (2 if module.bidirectional else 1)
    rng = np.random.default_rng(seed)
    arrays = [
        torch.from_numpy(rng.normal(size=(layers, BATCH, HIDDEN)).astype(np.float32))
        for _ in range(2 if kind == "lstm" else 1)
    ]
    return tuple(arrays) if kind == "lstm" else arrays[0]


def assert_close(actual, expected):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape
        np.testing.assert_allclose(np.asarray(a), e, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("kind", "num_layers", "bidirectional", "batch_first"),
    list(itertools.product(KINDS, [1, 2], [False, True], [False, True])),
)
@pytest.mark.parametrize("packed", [False, True], ids=["padded-none", "packed"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "h0"])
def test_from_torch_matches_module(
    torch, kind, num_layers, bidirectional, batch_first, packed, with_state
):
    module = make_module(
        torch, kind, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first
    )
    lengths = LENGTHS if packed else None
    xs = inputs(module, lengths)
    state = initial_state(torch, module, kind) if with_state else None
    want_ys, want_state = run_torch(torch, module, xs, lengths, state)

    apply, params = rnnjax.interop.from_torch(module)
    ys, final_state = apply(
        params,
        jnp.asarray(xs),
        seq_lengths=None if lengths is None else jnp.asarray(lengths),
        initial_carry=None
        if state is None
        else jax.tree.map(lambda t: jnp.asarray(t.numpy()), state),
    )
    assert jax.tree.structure(final_state) == jax.tree.structure(want_state)
    assert_close(ys, want_ys)
    assert_close(final_state, want_state)


@pytest.mark.parametrize("kind", KINDS)
def test_modules_without_bias(torch, kind):
    module = make_module(torch, kind, num_layers=2, bias=False, batch_first=True)
    xs = inputs(module, None)
    apply, params = rnnjax.interop.from_torch(module)
    assert not any(np.any(p.bias) for layer in params for p in layer)
    assert_close(apply(params, jnp.asarray(xs)), run_torch(torch, module, xs))


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input(torch, batch_first):
    module = make_module(torch, "lstm", num_layers=2, bidirectional=True, batch_first=batch_first)
    xs = np.random.default_rng(0).normal(size=(TIME, INPUT)).astype(np.float32)
    apply, params = rnnjax.interop.from_torch(module)
    ys, (h_n, c_n) = apply(params, jnp.asarray(xs))
    want_ys, (want_h, want_c) = run_torch(torch, module, xs)
    assert ys.shape == want_ys.shape == (TIME, 2 * HIDDEN) and h_n.shape == want_h.shape == (
        4,
        HIDDEN,
    )
    assert_close((ys, h_n, c_n), (want_ys, want_h, want_c))


@pytest.mark.parametrize("kind", KINDS)
def test_to_torch_round_trip(torch, kind):
    source = make_module(torch, kind, seed=0, num_layers=2, bidirectional=True)
    target = make_module(torch, kind, seed=1, num_layers=2, bidirectional=True)
    _, params = rnnjax.interop.from_torch(source)
    rnnjax.interop.to_torch(params, target)
    xs = inputs(source, LENGTHS)
    assert_close(run_torch(torch, target, xs, LENGTHS), run_torch(torch, source, xs, LENGTHS))
    _, back = rnnjax.interop.from_torch(target)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6), back, params)


def test_to_torch_from_rnnjax_init(torch):
    """Params made by rnnjax (not converted) load into torch and compute the same."""
    cell = rnnjax.gru(HIDDEN, initializer="torch")
    params = ((cell.init(jax.random.key(0), INPUT),),)
    module = make_module(torch, "gru", batch_first=True)
    rnnjax.interop.to_torch(params, module)
    xs = inputs(module, None)
    _, ys = rnnjax.rnn(cell, params[0][0], jnp.asarray(xs))
    np.testing.assert_allclose(ys, run_torch(torch, module, xs)[0], rtol=0, atol=ATOL)


def test_from_torch_errors(torch):
    with pytest.raises(ValueError, match=r"from_torch: LSTM with proj_size=2 cannot be converted"):
        rnnjax.interop.from_torch(torch.nn.LSTM(INPUT, HIDDEN, proj_size=2))
    with pytest.raises(TypeError, match=r"module must be a torch.nn.RNN, LSTM or GRU; got Linear"):
        rnnjax.interop.from_torch(torch.nn.Linear(INPUT, HIDDEN))


def test_to_torch_errors(torch):
    _, lstm_params = rnnjax.interop.from_torch(make_module(torch, "lstm", num_layers=2))
    with pytest.raises(
        ValueError, match=r"to_torch: params must have 1 layers of 1 direction\(s\); got \[1, 1\]"
    ):
        rnnjax.interop.to_torch(lstm_params, make_module(torch, "lstm"))
    with pytest.raises(
        ValueError, match=r"a torch.nn.GRU takes GRUParams; got LSTMParams at layer 0"
    ):
        rnnjax.interop.to_torch(lstm_params, make_module(torch, "gru", num_layers=2))
    with pytest.raises(
        ValueError, match=r"nonzero bias at layer 0, direction 0, but the module has bias=False"
    ):
        rnnjax.interop.to_torch(lstm_params, make_module(torch, "lstm", num_layers=2, bias=False))
    with pytest.raises(ValueError, match=r"weight_ih_l0 must have shape \(20, 4\); got \(20, 3\)"):
        rnnjax.interop.to_torch(lstm_params[:1], torch.nn.LSTM(4, HIDDEN))
    reset_before = rnnjax.gru(HIDDEN, reset_after=False).init(jax.random.key(0), INPUT)
    with pytest.raises(ValueError, match=r"reset_after=False\) cannot be converted"):
        rnnjax.interop.to_torch(((reset_before,),), make_module(torch, "gru"))
