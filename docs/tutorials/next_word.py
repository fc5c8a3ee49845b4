"""Tutorial 4: next-word prediction and text generation with a word-level LSTM.

The page ``docs/tutorials/next_word.md`` shows all of this file, in order: its code blocks,
pasted into one file, are this script. ``RNNJAX_QUICK=1`` runs a small setting (what CI
runs). The page's figure: ``cd docs/tutorials/figures && python ../next_word.py``.
"""

# --8<-- [start:imports]
import os
import re
from collections import Counter

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import rnnjax

QUICK = os.environ.get("RNNJAX_QUICK") == "1"  # a small setting, for a quick check
# characters of text (None: all), vocabulary, embedding and LSTM sizes, training steps,
# batch size and window (words per training sequence)
MAX_CHARS, VOCAB_SIZE, EMBEDDING, HIDDEN = (30_000, 200, 8, 16) if QUICK else (None, 2000, 64, 128)
STEPS, BATCH, WINDOW = (10, 8, 8) if QUICK else (1000, 32, 32)
# --8<-- [end:imports]


# --8<-- [start:data]
def load_words(max_chars=None):
    """Python's help topics as one list of lower-case words and punctuation marks."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[name] for name in sorted(topics))[:max_chars]
    return re.findall(r"[a-z_]+|[0-9]+|[.,:;()=]", text.lower())


def build_vocabulary(words, size):
    """The ``size - 1`` most frequent words get ids 1, 2, ...; id 0 is ``<unk>``."""
    counts = Counter(words)
    vocabulary = ["<unk>"] + [word for word, _ in counts.most_common(size - 1)]
    return vocabulary, {word: i for i, word in enumerate(vocabulary)}


# --8<-- [end:data]


# --8<-- [start:model]
def make_model(vocab_size, embedding_size, hidden_size):
    """Embedding -> LSTM -> Dense(vocab): ``init``, ``logits_fn`` (a whole sequence, for
    training) and ``step_fn`` (one token, for generation) over the same params."""
    cell = rnnjax.lstm(hidden_size)

    def init(key):
        k_embed, k_lstm, k_dense = jax.random.split(key, 3)
        return {
            "embed": jax.random.normal(k_embed, (vocab_size, embedding_size)) * 0.1,
            "lstm": cell.init(k_lstm, input_size=embedding_size),
            "dense": jax.nn.initializers.glorot_uniform()(k_dense, (hidden_size, vocab_size)),
            "bias": jnp.zeros((1, vocab_size)),
        }

    def logits_fn(params, tokens, carry=None):  # tokens [batch, time] -> [batch, time, vocab]
        carry, hs = rnnjax.rnn(cell, params["lstm"], params["embed"][tokens], initial_carry=carry)
        return carry, hs @ params["dense"] + params["bias"][None]

    def step_fn(params, carry, tokens):  # tokens [batch] -> logits [batch, vocab]
        carry, h = cell.step(params["lstm"], carry, params["embed"][tokens])
        return carry, h @ params["dense"] + params["bias"]

    return cell, init, logits_fn, step_fn


# --8<-- [end:model]


# --8<-- [start:train]
def train(init, logits_fn, ids, key, *, steps, batch_size, window, learning_rate=3e-3):
    """Adam on the next-word cross-entropy over random windows of the training ids."""
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))
    ids = jnp.asarray(ids)

    def loss_fn(params, tokens):  # predict tokens[:, 1:] from tokens[:, :-1]
        _, logits = logits_fn(params, tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    def train_step(state, key):
        params, opt_state = state
        starts = jax.random.randint(key, (batch_size, 1), 0, len(ids) - window - 1)
        tokens = ids[starts + jnp.arange(window + 1)[None]]  # [batch, window + 1]
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    k_init, k_steps = jax.random.split(key)
    params = init(k_init)
    state = (params, optimizer.init(params))
    (params, _), losses = jax.lax.scan(train_step, state, jax.random.split(k_steps, steps))
    return params, losses


# --8<-- [end:train]


# --8<-- [start:perplexity]
def model_perplexity(logits_fn, params, ids):
    """The validation text read as one long sequence: the state runs through all of it."""
    _, logits = logits_fn(params, ids[None, :-1])
    log_probs = jax.nn.log_softmax(logits[0])
    return jnp.exp(-jnp.take_along_axis(log_probs, ids[1:, None], axis=-1).mean())


def ngram_perplexities(train_ids, val_ids, vocab_size):
    """Unigram and bigram (interpolated with the unigram, the weight chosen on the
    validation text itself, which flatters the baseline) perplexities."""
    unigram = (np.bincount(train_ids, minlength=vocab_size) + 1.0) / (len(train_ids) + vocab_size)
    pairs = np.zeros((vocab_size, vocab_size))
    np.add.at(pairs, (train_ids[:-1], train_ids[1:]), 1.0)
    rows = pairs.sum(axis=1, keepdims=True)
    bigram = np.divide(pairs, rows, out=np.zeros_like(pairs), where=rows > 0)
    previous, following = val_ids[:-1], val_ids[1:]

    def perplexity(probabilities):
        return float(np.exp(-np.mean(np.log(probabilities))))

    best_bigram = min(
        perplexity(weight * bigram[previous, following] + (1 - weight) * unigram[following])
        for weight in np.linspace(0.05, 0.95, 19)
    )
    return perplexity(unigram[following]), best_bigram


# --8<-- [end:perplexity]


# --8<-- [start:run]
words = load_words(MAX_CHARS)
split = int(0.9 * len(words))  # the last 10% of the text is held out
vocabulary, index = build_vocabulary(words[:split], VOCAB_SIZE)
ids = np.array([index.get(word, 0) for word in words], np.int32)
train_ids, val_ids = ids[:split], ids[split:]
print(f"{len(words):,} words, vocabulary {VOCAB_SIZE}, {np.mean(ids == 0):.1%} <unk>")

cell, init, logits_fn, step_fn = make_model(VOCAB_SIZE, EMBEDDING, HIDDEN)
fit = jax.jit(
    lambda key: train(init, logits_fn, train_ids, key, steps=STEPS, batch_size=BATCH, window=WINDOW)
)
params, losses = fit(jax.random.key(0))
unigram, bigram = ngram_perplexities(train_ids, val_ids, VOCAB_SIZE)
lstm = float(jax.jit(model_perplexity, static_argnums=0)(logits_fn, params, val_ids))
print(f"training perplexity (last 100 steps): {float(jnp.exp(losses[-100:].mean())):.1f}")
print(f"validation perplexity: LSTM {lstm:.1f}, bigram {bigram:.1f}, unigram {unigram:.1f}")
# --8<-- [end:run]

# --8<-- [start:predict]
prompt = ["the", "return", "value", "is"]
prompt_ids = jnp.array([index.get(word, 0) for word in prompt])
_, logits = logits_fn(params, prompt_ids[None])  # [1, time, vocab]
probabilities = jax.nn.softmax(logits[0, -1])  # after the last prompt word
top = np.argsort(-np.asarray(probabilities))[:5]
print("next word:", ", ".join(f"{vocabulary[i]} {probabilities[i]:.2f}" for i in top))
# --8<-- [end:predict]


# --8<-- [start:scan]
@jax.jit
def greedy(params, prompt_ids, length=12):
    carry = cell.initial_carry(params["lstm"], (1,))  # a batch of one sequence
    # Read the prompt but its last word (outputs unused), one cell.step per word ...
    carry, _ = jax.lax.scan(
        lambda carry, token: step_fn(params, carry, token), carry, prompt_ids[:-1, None]
    )

    # ... then feed the last word and each chosen word back in.
    def next_word(state, _):
        carry, token = state
        carry, logits = step_fn(params, carry, token)
        token = jnp.argmax(logits, axis=-1)  # [1]
        return (carry, token), token[0]

    _, tokens = jax.lax.scan(next_word, (carry, prompt_ids[-1:]), length=length)
    return tokens, carry


tokens, _ = greedy(params, prompt_ids)
print("greedy (scan):", " ".join(prompt + [vocabulary[i] for i in tokens]))
# --8<-- [end:scan]

# --8<-- [start:decode]
carry = cell.initial_carry(params["lstm"], (1,))
carry, _ = logits_fn(params, prompt_ids[None, :-1], carry)  # the prompt but its last word
start = prompt_ids[-1:]  # [batch] = [1]
texts = {}
for method, options in [
    ("greedy", {}),
    ("sample", {"key": jax.random.key(1), "temperature": 0.7, "top_k": 20}),
    ("beam", {"beam_width": 4}),
]:
    out = rnnjax.decode(step_fn, params, carry, start, max_length=12, method=method, **options)
    best = out.tokens[0] if method != "beam" else out.tokens[0, 0]  # beams: best first
    texts[method] = " ".join(prompt + [vocabulary[i] for i in best])
    print(f"{method:6s} (decode): {texts[method]}   score {float(out.scores.ravel()[0]):.1f}")
greedy_tokens = rnnjax.decode(step_fn, params, carry, start, max_length=12).tokens[0]
print("decode's greedy words are the scan's:", bool(jnp.array_equal(greedy_tokens, tokens)))
# --8<-- [end:decode]

# --8<-- [start:plot]
steps = np.arange(1, len(losses) + 1)
average = np.convolve(losses, np.ones(50) / 50, mode="valid") if len(losses) >= 50 else losses
figure, axis = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
axis.plot(steps, np.exp(losses), color="tab:blue", alpha=0.3, label="training batch")
axis.plot(steps[len(steps) - len(average) :], np.exp(average), color="tab:blue", label="mean of 50")
axis.axhline(lstm, color="tab:orange", linestyle="--", label="LSTM, validation")
axis.axhline(bigram, color="tab:green", linestyle=":", label="bigram, validation")
axis.set(xlabel="training step", ylabel="perplexity", yscale="log", title="Training the LSTM")
axis.legend()
axis.grid(True, which="both", alpha=0.3)
figure.savefig("next_word_training.png", dpi=120)
print("wrote next_word_training.png")
# --8<-- [end:plot]
