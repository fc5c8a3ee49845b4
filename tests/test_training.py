"""``rnnjax.training``: the clipped train step, exact resume, batching, data parallelism."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax
import rnnjax.training as training

CELL = rnnjax.lstm(6)


def loss_fn(params, batch, key):
    carry, _ = rnnjax.rnn(CELL, params["lstm"], batch["xs"], seq_lengths=batch["lengths"])
    prediction = carry.h @ params["head"]
    noise = 0.01 * jax.random.normal(key, prediction.shape)  # uses the step's key
    return jnp.mean((prediction + noise - batch["ys"]) ** 2)


def make_params(seed=0):
    k_lstm, k_head = jax.random.split(jax.random.key(seed))
    return {"lstm": CELL.init(k_lstm, 2), "head": jax.random.normal(k_head, (6,))}


def make_data(examples=48, seed=1):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(examples, 5, 2)).astype(np.float32)
    lengths = rng.integers(1, 6, size=examples).astype(np.int32)
    return {"xs": xs, "lengths": lengths, "ys": np.tanh(xs[:, 0, 0] + xs[:, 0, 1])}


def test_train_step_learns_and_reports_grad_norm():
    trainer = training.make_trainer(loss_fn, optax.adam(1e-2))
    state = trainer.init(make_params(), jax.random.key(0))
    batch = training.epoch_batches(make_data(), 16)(0)
    grads = jax.grad(loss_fn)(state.params, batch, jax.random.fold_in(state.key, 0))
    first = trainer.evaluate(state.params, batch)
    state, metrics = trainer.step(state, batch)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-6)
    for _ in range(30):
        state, metrics = trainer.step(state, batch)
    assert int(state.step) == 31
    assert trainer.evaluate(state.params, batch) < 0.5 * first


def exploding_loss(params, batch, key):
    """A linear RNN with recurrent weight 2 over 20 steps: gradients of order 2**40."""
    cell = rnnjax.simple_rnn(1, lambda x: x)
    _, ys = rnnjax.rnn(cell, params, batch)
    return jnp.mean(ys[:, -1] ** 2)


@pytest.mark.parametrize("clip_norm", [1.0, None])
def test_gradient_clipping_engages_on_exploding_gradients(clip_norm):
    params = rnnjax.SimpleRNNParams(jnp.ones((1, 1)), jnp.full((1, 1), 2.0), jnp.zeros(1))
    trainer = training.make_trainer(exploding_loss, optax.sgd(1e-3), clip_norm=clip_norm)
    state = trainer.init(params, jax.random.key(0))
    new_state, metrics = trainer.step(state, jnp.ones((2, 20, 1)))
    step_size = optax.tree.norm(jax.tree.map(jnp.subtract, new_state.params, params))
    assert metrics["grad_norm"] > 1e9  # reported before clipping
    if clip_norm is None:
        np.testing.assert_allclose(step_size, 1e-3 * metrics["grad_norm"], rtol=1e-3)
    else:
        np.testing.assert_allclose(step_size, 1e-3 * clip_norm, rtol=1e-3)  # float32 steps


class Interrupted(Exception):
    pass


def test_resume_after_interruption_is_bit_identical(tmp_path):
    trainer = training.make_trainer(loss_fn, optax.adam(1e-2))
    get_batch = training.epoch_batches(make_data(), 16, seed=3)  # 3 batches an epoch
    start = trainer.init(make_params(), jax.random.key(7))
    options = dict(checkpoint_every=4, log_every=1, progress=False)

    whole = training.fit(trainer, start, get_batch, 11, checkpoint_dir=tmp_path / "a", **options)

    def interrupted_batches(step):
        if step == 9:
            raise Interrupted  # as if the process were killed during step 9
        return get_batch(step)

    metrics_path = tmp_path / "metrics.jsonl"
    kwargs = dict(checkpoint_dir=tmp_path / "b", metrics_path=metrics_path, **options)
    with pytest.raises(Interrupted):
        training.fit(trainer, start, interrupted_batches, 11, **kwargs)
    resumed = training.fit(trainer, start, get_batch, 11, **kwargs)  # continues from step 8

    assert int(resumed.step) == int(whole.step) == 11
    jax.tree.map(np.testing.assert_array_equal, resumed.params, whole.params)
    jax.tree.map(np.testing.assert_array_equal, resumed.opt_state, whole.opt_state)
    np.testing.assert_array_equal(jax.random.key_data(resumed.key), jax.random.key_data(start.key))
    steps = [json.loads(line)["step"] for line in metrics_path.read_text().splitlines()]
    assert steps == list(range(1, 12))  # rows 9.. of the killed run dropped, logged once
    assert all("loss" in json.loads(line) for line in metrics_path.read_text().splitlines())


def test_fit_runs_evaluation_and_returns_at_once_when_done(tmp_path):
    trainer = training.make_trainer(loss_fn, optax.adam(1e-2))
    get_batch = training.epoch_batches(make_data(), 16)
    seen = []

    def evaluate(params):
        seen.append(None)
        return {"val_loss": trainer.evaluate(params, get_batch(0))}

    state = training.fit(
        trainer,
        trainer.init(make_params(), jax.random.key(0)),
        get_batch,
        6,
        evaluate=evaluate,
        eval_every=3,
        progress=False,
        checkpoint_dir=tmp_path,
    )
    assert int(state.step) == 6 and len(seen) == 2
    again = training.fit(trainer, state, get_batch, 6, progress=False, checkpoint_dir=tmp_path)
    jax.tree.map(np.testing.assert_array_equal, again.params, state.params)


def test_epoch_batches():
    data = make_data(10)
    get_batch = training.epoch_batches(data, 3, seed=1)
    epoch = np.concatenate([get_batch(step)["ys"] for step in range(3)])
    assert len(set(epoch.tolist())) == 9  # three batches of an epoch never repeat an example
    np.testing.assert_array_equal(get_batch(4)["xs"], get_batch(4)["xs"])
    assert not np.array_equal(get_batch(0)["ys"], get_batch(3)["ys"])  # reshuffled
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 10\] .*; got 11"):
        training.epoch_batches(data, 11)
    with pytest.raises(
        ValueError, match=r"arrays must share their leading axis; got lengths \[10, 9\]"
    ):
        training.epoch_batches((np.zeros(10), np.zeros(9)), 2)


@pytest.mark.parametrize("processes", [2, 4])
def test_epoch_batches_gives_each_process_its_share_in_the_global_order(processes):
    data = make_data(20)
    whole = training.epoch_batches(data, 8, seed=2)
    shares = [
        training.epoch_batches(data, 8, seed=2, process_index=i, process_count=processes)
        for i in range(processes)
    ]
    for step in (0, 1, 2, 5):  # 2 batches an epoch: several epochs
        together = [share(step) for share in shares]
        for name in data:
            joined = np.concatenate([part[name] for part in together])
            np.testing.assert_array_equal(joined, whole(step)[name])
    with pytest.raises(ValueError, match=r"batch_size \(6\) must divide by process_count \(4\)"):
        training.epoch_batches(data, 6, process_index=0, process_count=4)
    with pytest.raises(ValueError, match=r"process_index must be in \[0, 2\); got process_index 2"):
        training.epoch_batches(data, 6, process_index=2, process_count=2)


def run_fit_script(out, *flags):
    script = Path(__file__).with_name("_fit_script.py")
    command = [sys.executable, str(script), str(out), *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_killed_and_resumed_run_ends_exactly_as_an_uninterrupted_one(tmp_path):
    """SIGKILL between checkpoints, during a checkpoint write and right after one, then Ctrl-C:
    the final params, the best-on-validation record and the metrics rows are the same."""
    whole = run_fit_script(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    want = json.loads(whole.stdout.strip().splitlines()[-1])
    assert 0 < want["best"]["step"] < 8  # a kill after it must not lose it

    out = tmp_path / "killed"
    checkpoints = out / "checkpoints"
    killed = run_fit_script(out, "--kill-at-batch", "7")  # steps 5-7 run past checkpoint 4
    assert killed.returncode == -9, killed.stderr[-3000:]
    killed = run_fit_script(out, "--kill-in-write", "8")  # files written, not yet committed
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.isdigit()) == ["4"]
    assert any("tmp" in p.name for p in checkpoints.iterdir())  # the uncommitted write
    killed = run_fit_script(out, "--kill-at-batch", "12")  # right after checkpoint 12
    assert killed.returncode == -9, killed.stderr[-3000:]
    stopped = run_fit_script(out, "--sigint-at", "17")  # Ctrl-C: stops after step 18, saved
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "interrupted at step 18 of 24; saved a checkpoint in" in stopped.stderr
    assert "Run the same command again to resume" in stopped.stderr
    assert "18" in {p.name for p in checkpoints.iterdir()}
    resumed = run_fit_script(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1]) == want

    def rows(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]

    assert rows("killed") == rows("whole")


def test_keep_best_errors():
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'; got 'lowest'"):
        training.KeepBest("val_loss", mode="lowest")
    with pytest.raises(KeyError, match="evaluate returned no 'val_loss'; it returned \\['acc'\\]"):
        training.KeepBest("val_loss").update(1, {"acc": 0.5}, params=None)
    trainer = training.make_trainer(loss_fn, optax.adam(1e-2))
    start = trainer.init(make_params(), jax.random.key(0))
    with pytest.raises(ValueError, match="keep_best needs evaluate"):
        training.fit(trainer, start, lambda s: None, 1, keep_best=training.KeepBest("x"))
    mesh = training.data_parallel_mesh()
    with pytest.raises(ValueError, match="fit: give mesh or place_batch, not both"):
        training.fit(trainer, start, lambda s: None, 1, mesh=mesh, place_batch=lambda b: b)


def test_data_parallel_and_time_sharded_on_8_devices_equal_one_device():
    script = Path(__file__).with_name("_data_parallel_script.py")
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 8 and report["params_devices"] == 8
    assert "data" in report["batch_sharding"]
    assert report["max_difference"] < 1e-5
    assert report["uneven_error"] == (
        "rnnjax.training.shard_batch: the batch axis (9) must divide by the number of devices"
        " (8); got an array of shape (9, 2)"
    )
    assert report["uneven_local_error"] == (
        "rnnjax.training.global_batch: the batch axis (9) must divide by the number of this"
        " process's devices (8); got an array of shape (9, 2)"
    )
    assert report["global_batch_equals_shard_batch"] and report["replicated_key_is_typed"]
    sharded = report["time_sharded"]  # T=65,536 on 4 devices against linear_recurrence
    for reverse in ("reverse=False", "reverse=True"):
        assert sharded[reverse]["hs_sharding"] == "(None, 'time')"
        for part in ("hs", "final", "loss", "grads"):
            assert sharded[reverse][part] < 1e-5, (reverse, part, sharded[reverse][part])
    assert sharded["min_gru"] < 1e-5  # a minGRU's coefficients through it equal rnnjax.rnn
    assert sharded["error"] == (
        "rnnjax.time_sharded_linear_recurrence: the time axis (10) must divide by the size of"
        " mesh axis 'time' (4); got a of shape (2, 10, 4)"
    )


MULTIPROCESS_SCRIPT = Path(__file__).with_name("_multiprocess_script.py")


@contextmanager
def launched(out, processes, devices, *flags):
    """Starts the script as ``processes`` processes on 127.0.0.1 (``devices`` CPU devices
    each); on leaving, every one still running is killed with its whole process group,
    whatever happened (a timeout, a failed assertion)."""
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    command = [sys.executable, str(MULTIPROCESS_SCRIPT), str(out), "--processes", str(processes)]
    running = []
    try:
        for index in range(processes):
            process_flags = ["--process-id", str(index), "--port", str(port), *flags]
            running.append(
                subprocess.Popen(
                    command + process_flags,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,  # its own process group, killed below
                )
            )
        yield running
    finally:
        for process in running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def results(running, timeout=60):
    """``(returncode, stdout, stderr)`` of each process, waiting at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    outputs = [p.communicate(timeout=max(deadline - time.monotonic(), 1)) for p in running]
    return [
        (p.returncode, stdout, stderr) for p, (stdout, stderr) in zip(running, outputs, strict=True)
    ]


def test_two_processes_stopped_killed_and_resumed_equal_one_process_and_one_device(tmp_path):
    """``fit(mesh=...)`` on two real processes (gloo, 2 CPU devices each): Ctrl-C to process 1
    alone stops both after step 2 (saved); resumed, then killed after step 5; resumed from the
    checkpoint of step 3 to the end, the run equals one process on 4 devices and one device
    with no mesh: params, optimiser state, best record and metrics rows."""
    two = tmp_path / "two"
    with launched(tmp_path, 1, 4) as reference:
        with launched(two, 2, 2, "--sigint-at-batch", "1") as pair:
            stopped = results(pair)
        assert [code for code, _, _ in stopped] == [130, 130], stopped[1][2][-3000:]
        assert "interrupted at step 2 of 8; saved a checkpoint in" in stopped[0][2]
        assert "interrupted" not in stopped[1][2]  # messages from process 0 only
        with launched(two, 2, 2, "--kill-at-batch", "5") as pair:
            killed = results(pair)
        assert killed[0][0] == -9 and killed[1][0] != 0, killed[0][2][-3000:]
        checkpoints = sorted(p.name for p in (two / "checkpoints").iterdir() if p.name.isdigit())
        assert checkpoints == ["2", "3"]
        with launched(two, 2, 2) as pair:
            resumed = results(pair)
        [(code, stdout, stderr)] = results(reference)
    assert [code for code, _, _ in resumed] == [0, 0], resumed[0][2][-3000:] + resumed[1][2][-3000:]
    assert "{" not in resumed[1][1]  # process 0 prints the result, process 1 does not
    got = json.loads(resumed[0][1].strip().splitlines()[-1])
    assert code == 0, stderr[-3000:]
    want = json.loads(stdout.strip().splitlines()[-1])
    assert (got["processes"], got["devices"], want["mesh"]["devices"], want["one"]["devices"]) == (
        2, 4, 4, 1,
    )  # fmt: skip

    def rows(path):
        lines = path.read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]

    for run in ("mesh", "one"):
        for part in ("params", "opt_state"):
            for a, b in zip(got[part], want[run][part], strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        assert got["best"]["step"] == want[run]["best"]["step"]
        np.testing.assert_allclose(got["best"]["score"], want[run]["best"]["score"], rtol=1e-6)
        ours, theirs = rows(two / "metrics.jsonl"), rows(tmp_path / run / "metrics.jsonl")
        assert [sorted(r.items()) for r in ours] != [] and len(ours) == len(theirs)
        for mine, other in zip(ours, theirs, strict=True):
            assert mine.keys() == other.keys() and mine["step"] == other["step"]
            np.testing.assert_allclose(list(mine.values()), list(other.values()), rtol=1e-6)
    assert [r["step"] for r in rows(two / "metrics.jsonl") if "loss" in r] == list(range(1, 9))
