"""rnnjax.nnx: each module equals the functional call on its params, bit for bit on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import rnnjax
import rnnjax.interop
import rnnjax.nnx
from tests.peers import import_peer

BATCH, TIME, FEATURES, HIDDEN = 3, 6, 4, 5
LENGTHS = jnp.array([6, 0, 3])

KINDS = {
    "simple_rnn-relu": (
        lambda **kw: rnnjax.nnx.SimpleRNN(FEATURES, HIDDEN, activation=jax.nn.relu, **kw),
        rnnjax.simple_rnn(HIDDEN, jax.nn.relu),
    ),
    "lstm": (lambda **kw: rnnjax.nnx.LSTM(FEATURES, HIDDEN, **kw), rnnjax.lstm(HIDDEN)),
    "gru": (lambda **kw: rnnjax.nnx.GRU(FEATURES, HIDDEN, **kw), rnnjax.gru(HIDDEN)),
    "gru-reset_before": (
        lambda **kw: rnnjax.nnx.GRU(FEATURES, HIDDEN, reset_after=False, **kw),
        rnnjax.gru(HIDDEN, reset_after=False),
    ),
}
# Every option on some cell (the cells share every code path but the step itself).
CASES = [
    ("simple_rnn-relu", {}),
    ("lstm", {"return_sequences": True}),
    ("gru", {"return_state": True, "go_backwards": True, "hoist_projection": True}),
    ("lstm", {"return_sequences": True, "go_backwards": True}),
    ("gru-reset_before", {"return_sequences": True, "return_state": True, "unroll": 3}),
    ("simple_rnn-relu", {"return_sequences": True, "remat": True, "go_backwards": True}),
    ("lstm", {"initializer": "torch", "dropout": 0.3, "recurrent_dropout": 0.4}),
    ("gru", {"return_sequences": True, "dropout": 0.3, "recurrent_dropout": 0.4}),
    ("lstm", {"return_state": True, "recurrent_dropout": 0.4, "hoist_projection": True}),
]


def inputs(key=0, shape=(BATCH, TIME, FEATURES)):
    return jax.random.normal(jax.random.key(key), shape)


def h_of(carry):
    return carry.h if isinstance(carry, rnnjax.LSTMState) else carry


def keras_structure(final, ys, lengths, *, return_sequences, return_state, go_backwards):
    """What Keras returns, from a functional (final, ys), by a per-sequence loop."""
    if return_sequences:
        outputs = np.asarray(ys)
        if go_backwards:  # processing order: each valid part reversed, zeros after
            flipped = np.zeros_like(outputs)
            for b in range(outputs.shape[0]):
                n = TIME if lengths is None else int(lengths[b])
                flipped[b, :n] = outputs[b, :n][::-1]
            outputs = flipped
    else:
        outputs = h_of(final)
    return (outputs, final) if return_state else outputs


def assert_equal(actual, expected):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


@pytest.mark.parametrize(
    ("kind", "options", "lengths"),
    [(k, o, lengths) for i, (k, o) in enumerate(CASES) for lengths in [(None, LENGTHS)[i % 2]]],
    ids=[f"{k}-{'-'.join(o) or 'default'}" for k, o in CASES],
)
def test_module_equals_functional(kind, options, lengths):
    make, cell = KINDS[kind]
    module = make(rngs=nnx.Rngs(0), **options)
    deterministic = "dropout" not in options
    key = jax.random.key(7)
    got = module(inputs(), seq_lengths=lengths, rngs=key, deterministic=deterministic)
    layer_options = {
        k: v
        for k, v in options.items()
        if k in ("dropout", "recurrent_dropout", "unroll", "remat", "hoist_projection")
    }
    layer = rnnjax.layer(cell, reverse=options.get("go_backwards", False), **layer_options)
    final, ys = layer.apply(
        module.params, inputs(), seq_lengths=lengths, key=key, deterministic=deterministic
    )
    want = keras_structure(
        final,
        ys,
        lengths,
        return_sequences=options.get("return_sequences", False),
        return_state=options.get("return_state", False),
        go_backwards=options.get("go_backwards", False),
    )
    assert_equal(got, want)


def test_forward_mode_equals_plain_autodiff_and_fused_backward_is_gone():
    module = rnnjax.nnx.LSTM(FEATURES, HIDDEN, return_sequences=True, rngs=nnx.Rngs(0))
    plain = rnnjax.layer(rnnjax.lstm(HIDDEN)._replace(gate_split=None))
    primals, tangents = (inputs(),), (inputs(1),)
    got = jax.jvp(lambda x: module(x, deterministic=True), primals, tangents)
    want = jax.jvp(lambda x: plain.apply(module.params, x)[1], primals, tangents)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(
        TypeError, match=r"rnnjax.nnx.LSTM: fused_backward= was removed; the fast backward pass is"
    ):
        rnnjax.nnx.LSTM(FEATURES, HIDDEN, fused_backward=True, rngs=nnx.Rngs(0))


def test_init_matches_cell_init_and_dtypes():
    module = rnnjax.nnx.LSTM(FEATURES, HIDDEN, initializer="flax", rngs=nnx.Rngs(params=3))
    want = rnnjax.lstm(HIDDEN, initializer="flax").init(nnx.Rngs(params=3).params(), FEATURES)
    assert type(module.params) is rnnjax.LSTMParams
    assert_equal(module.params, want)
    half = rnnjax.nnx.GRU(
        FEATURES, HIDDEN, dtype=jnp.bfloat16, param_dtype=jnp.float32, rngs=nnx.Rngs(0)
    )
    assert half.params.kernel.dtype == jnp.float32
    layer = rnnjax.layer(rnnjax.gru(HIDDEN), compute_dtype=jnp.bfloat16)
    assert_equal(half(inputs()), layer.apply(half.params, inputs())[0])
    f64 = rnnjax.nnx.SimpleRNN(FEATURES, HIDDEN, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(f64.params))


def test_go_backwards_is_keras():
    """Keras's go_backwards: a forward run over the flipped sequence (rnnjax.interop's)."""
    module = rnnjax.nnx.GRU(FEATURES, HIDDEN, go_backwards=True, return_sequences=True,
                            return_state=True, rngs=nnx.Rngs(0))  # fmt: skip
    ys, h = module(inputs())
    want_h, want_ys = rnnjax.rnn(rnnjax.gru(HIDDEN), module.params, jnp.flip(inputs(), 1))
    np.testing.assert_allclose(ys, want_ys, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(h, want_h, rtol=1e-6, atol=1e-6)


def test_initial_carry_and_state_round_trip():
    module = rnnjax.nnx.LSTM(FEATURES, HIDDEN, return_state=True, rngs=nnx.Rngs(0))
    xs = inputs()
    _, state = module(xs[:, :3])
    last, final = module(xs[:, 3:], initial_carry=state)
    whole_last, whole_final = module(xs)
    np.testing.assert_allclose(last, whole_last, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(final.c, whole_final.c, rtol=1e-6, atol=1e-6)


def test_dropout_on_in_training_off_in_eval():
    module = rnnjax.nnx.LSTM(FEATURES, HIDDEN, dropout=0.5, recurrent_dropout=0.5, rngs=nnx.Rngs(0))
    xs = inputs()
    first, second = module(xs), module(xs)  # training by default: the stream moves on
    assert not np.allclose(first, second)
    module.eval()
    clean = module(xs)
    assert_equal(clean, rnnjax.layer(rnnjax.lstm(HIDDEN)).apply(module.params, xs)[0].h)
    assert_equal(module(xs), clean)
    assert not np.allclose(module(xs, deterministic=False), clean)
    module.train()
    assert not np.allclose(module(xs), clean)
    no_rngs = rnnjax.nnx.GRU(FEATURES, HIDDEN, dropout=0.5, rngs=nnx.Rngs(0))
    no_rngs.rngs = None
    with pytest.raises(ValueError, match="no rngs"):
        no_rngs(xs)


def test_settings_are_checked_once_for_every_module():
    unknown = r"rnnjax.nnx.LSTM: unknown setting\(s\) \['retrun_sequences'\]"
    with pytest.raises(TypeError, match=unknown):
        rnnjax.nnx.LSTM(FEATURES, HIDDEN, retrun_sequences=True, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"rnnjax.nnx.GRU: unknown setting\(s\) \['activation'\]"):
        rnnjax.nnx.GRU(FEATURES, HIDDEN, activation=jnp.tanh, rngs=nnx.Rngs(0))
    gru = rnnjax.nnx.GRU(FEATURES, HIDDEN, reset_after=False, unroll=2, rngs=nnx.Rngs(0))
    assert gru.recurrent.cell is rnnjax.gru(HIDDEN, reset_after=False)
    assert gru.recurrent.settings.unroll == 2


def test_jit_grad_vmap():
    module = rnnjax.nnx.GRU(FEATURES, HIDDEN, return_sequences=True, rngs=nnx.Rngs(0))
    xs = inputs()
    assert_equal(nnx.jit(lambda m, x: m(x))(module, xs), module(xs))

    def loss(m):
        return jnp.sum(m(xs) ** 2)

    grads = nnx.grad(loss)(module)
    layer = rnnjax.layer(rnnjax.gru(HIDDEN))
    want = jax.grad(lambda p: jnp.sum(layer.apply(p, xs)[1] ** 2))(module.params)
    for name, value in want._asdict().items():
        assert_equal(grads["cell"][name][...], value)

    graphdef, state = nnx.split(module)
    many = inputs(1, (2, BATCH, TIME, FEATURES))
    mapped = jax.vmap(lambda x: nnx.merge(graphdef, state)(x))(many)
    np.testing.assert_allclose(mapped, module(many), rtol=1e-6, atol=1e-6)


def test_split_merge_round_trip_and_param_paths():
    module = rnnjax.nnx.LSTM(FEATURES, HIDDEN, num_layers=2, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(module)
    paths = {"/".join(map(str, path)) for path, _ in nnx.to_flat_state(state)}
    assert "cell/0/kernel" in paths and "cell/1/recurrent_kernel" in paths
    merged = nnx.merge(graphdef, state)
    assert_equal(merged(inputs()), module(inputs()))
    assert_equal(merged.params, module.params)


def test_stacked_equals_stack():
    module = rnnjax.nnx.GRU(
        FEATURES, HIDDEN, num_layers=3, stack_dropout=0.3, dropout=0.2,
        return_sequences=True, return_state=True, rngs=nnx.Rngs(0),
    )  # fmt: skip
    key = jax.random.key(3)
    layer = rnnjax.layer(rnnjax.gru(HIDDEN), dropout=0.2)
    net = rnnjax.stack(layer, layer, layer, dropout=0.3)
    got = module(inputs(), seq_lengths=LENGTHS, rngs=key)
    want = net.apply(module.params, inputs(), seq_lengths=LENGTHS, key=key, deterministic=False)
    assert_equal(got, (want[1], want[0]))
    assert len(got[1]) == 3


@pytest.mark.parametrize("merge", ["concat", "sum", "ave", "mul", "none"])
def test_bidirectional_equals_functional(merge):
    rngs = nnx.Rngs(0)
    bi = rnnjax.nnx.Bidirectional(
        rnnjax.nnx.LSTM(FEATURES, HIDDEN, return_state=True, rngs=rngs), merge=merge, rngs=rngs
    )
    assert not np.allclose(bi.params.forward.kernel, bi.params.backward.kernel)
    (carry_f, carry_b), ys = rnnjax.bidirectional(
        rnnjax.layer(rnnjax.lstm(HIDDEN)), merge=merge
    ).apply(bi.params, inputs(), seq_lengths=LENGTHS)
    outputs, state = bi(inputs(), seq_lengths=LENGTHS)
    assert_equal(state, (carry_f, carry_b))
    halves = (carry_f.h, carry_b.h)
    want = {
        "concat": jnp.concatenate(halves, -1),
        "sum": halves[0] + halves[1],
        "ave": (halves[0] + halves[1]) / 2,
        "mul": halves[0] * halves[1],
        "none": halves,
    }[merge]
    assert_equal(outputs, want)
    if merge == "concat":  # with return_sequences: the functional ys
        sequences = rnnjax.nnx.Bidirectional(
            rnnjax.nnx.LSTM(FEATURES, HIDDEN, return_sequences=True, rngs=rngs), rngs=rngs
        )
        sequences.load_params(bi.params)
        assert_equal(sequences(inputs(), seq_lengths=LENGTHS), ys)


def test_load_params_from_torch_and_keras_layout():
    torch = import_peer("torch")
    torch.manual_seed(0)
    module = torch.nn.LSTM(FEATURES, HIDDEN, num_layers=2, batch_first=True)
    apply, params = rnnjax.interop.from_torch(module)
    ours = rnnjax.nnx.LSTM(
        FEATURES, HIDDEN, num_layers=2, return_sequences=True, return_state=True,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    ours.load_params(tuple(per_layer[0] for per_layer in params))  # one direction per layer
    ys, state = ours(inputs(), seq_lengths=LENGTHS)
    want_ys, (h_n, _) = apply(params, inputs(), seq_lengths=LENGTHS)
    assert_equal(ys, want_ys)
    assert_equal(state[1].h, h_n[1])
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.tensor(np.asarray(inputs())),
            torch.tensor([6, 1, 3]),
            batch_first=True,
            enforce_sorted=False,
        )
        _, (torch_h, _) = module(packed)
    np.testing.assert_allclose(state[1].h[0], torch_h[1, 0].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="params must match"):
        ours.load_params(params)


# --- The seed models -----------------------------------------------------------------------


class Sentiment(nnx.Module):
    """Embedding(10000, 16) -> LSTM(32) -> Dense(64, relu) -> Dense(1, sigmoid)."""

    def __init__(self, rngs: nnx.Rngs):
        self.embed = nnx.Embed(10000, 16, rngs=rngs)
        self.lstm = rnnjax.nnx.LSTM(16, 32, rngs=rngs)
        self.hidden = nnx.Linear(32, 64, rngs=rngs)
        self.out = nnx.Linear(64, 1, rngs=rngs)

    def __call__(self, tokens):
        h = self.lstm(self.embed(tokens))
        return nnx.sigmoid(self.out(nnx.relu(self.hidden(h))))[..., 0]


class Forecaster(nnx.Module):
    """SimpleRNN | LSTM | GRU(128) -> Dense(1) for a univariate series."""

    def __init__(self, kind: type, rngs: nnx.Rngs):
        self.rnn = kind(1, 128, rngs=rngs)
        self.out = nnx.Linear(128, 1, rngs=rngs)

    def __call__(self, window):  # [batch, time, 1] -> [batch, 1]
        return self.out(self.rnn(window))


class IMDB(nnx.Module):
    """Embedding(20000, 128) -> LSTM(128, dropout=0.2, recurrent_dropout=0.2) -> Dense(1)."""

    def __init__(self, rngs: nnx.Rngs):
        self.embed = nnx.Embed(20000, 128, rngs=rngs)
        self.lstm = rnnjax.nnx.LSTM(128, 128, dropout=0.2, recurrent_dropout=0.2, rngs=rngs)
        self.out = nnx.Linear(128, 1, rngs=rngs)

    def __call__(self, tokens, seq_lengths=None):
        return nnx.sigmoid(self.out(self.lstm(self.embed(tokens), seq_lengths=seq_lengths)))[..., 0]


def parity_data(time=8):
    bits = (np.arange(2**time)[:, None] >> np.arange(time)) & 1
    labels = (bits.sum(1) % 2 == 0).astype(np.float32)  # is the count of ones even?
    order = np.random.default_rng(0).permutation(2**time)
    return jnp.asarray(bits[order]), jnp.asarray(labels[order])


def bce(p, y):
    p = jnp.clip(p, 1e-6, 1 - 1e-6)
    return -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))


def test_sentiment_seed_model_learns_parity():
    """All 256 binary sequences of length 8, 200 for training, 56 held out; 300 Adam steps."""
    tokens, labels = parity_data()
    train, test = slice(0, 200), slice(200, None)
    model = Sentiment(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, tokens, labels):
        loss, grads = nnx.value_and_grad(lambda m: bce(m(tokens), labels))(model)
        optimizer.update(model, grads)
        return loss

    for _ in range(300):
        step(model, optimizer, tokens[train], labels[train])
    accuracy = float(jnp.mean((model(tokens[test]) > 0.5) == (labels[test] > 0.5)))
    assert accuracy >= 0.9, accuracy


def test_forecaster_seed_model_fits_a_sine(kind=rnnjax.nnx.GRU):
    series = jnp.sin(jnp.arange(120) * 0.3)
    windows = jnp.stack([series[i : i + 10] for i in range(100)])[..., None]
    targets = series[10:110][:, None]
    model = Forecaster(kind, nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(windows) - targets) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(60)]
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    for other in (rnnjax.nnx.SimpleRNN, rnnjax.nnx.LSTM):
        assert Forecaster(other, nnx.Rngs(0))(windows[:2, :3]).shape == (2, 1)


def test_imdb_seed_model_shapes_and_modes():
    model = IMDB(nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(0), (2, 6), 0, 20000)
    lengths = jnp.array([6, 4])
    train = model(tokens, lengths)
    model.eval()
    evaluation = model(tokens, lengths)
    assert train.shape == evaluation.shape == (2,)
    assert not np.allclose(train, evaluation)
    assert_equal(model(tokens, lengths), evaluation)
