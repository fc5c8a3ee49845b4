"""Forecast a real series one step ahead with SimpleRNN, LSTM and GRU, against baselines.

The Keras tutorial model ``SimpleRNN|LSTM|GRU(128) -> Dense(1)``, Adam, mean squared error, on
a series that ships with statsmodels: yearly sunspot numbers (1700-2008) or monthly Mauna Loa
CO2 (1958-2001). The split is chronological (train, then validation, then test), the scaler
is fit on the training part only, and each model sees the previous ``--window`` values
(standardised, or for the trending CO2 series relative to the latest value, predicting the
change from it: ``--target``). Test
RMSE is reported next to persistence (tomorrow = today) and a seasonal baseline (the value one
season ago: 11 years for sunspots, 12 months for CO2), and a plot of the forecast against the
truth is saved.

    python examples/forecast.py                      # sunspots, all three cells
    python examples/forecast.py --dataset co2 --cells lstm
    python examples/forecast.py --quick              # a smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
import rnnjax.training as training

CELLS = {"simple_rnn": rnnjax.simple_rnn, "lstm": rnnjax.lstm, "gru": rnnjax.gru}
SEASON = {"sunspots": 11, "co2": 12}
TARGET = {"sunspots": "level", "co2": "change"}  # CO2 trends out of the training range


def load_series(name: str) -> np.ndarray:
    """The raw series as float32, oldest first."""
    import statsmodels.api as sm

    if name == "sunspots":
        return sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float32)
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate()  # a few weeks are missing
    return monthly.to_numpy(np.float32)


def windows(series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``xs [n, window, 1]`` of consecutive values and ``ys [n]``, the value after each."""
    xs = np.lib.stride_tricks.sliding_window_view(series[:-1], window)
    return xs[..., None].astype(np.float32), series[window:].astype(np.float32)


def split(n: int, validation: float, test: float) -> tuple[slice, slice, slice]:
    n_test, n_val = round(n * test), round(n * validation)
    n_train = n - n_val - n_test
    return slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, n)


def rmse(prediction: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(prediction) - truth) ** 2)))


def make_model(kind: str, hidden: int) -> tuple[rnnjax.Cell, Any]:
    cell = CELLS[kind](hidden)

    def predict(params: Any, xs: jax.Array) -> jax.Array:
        carry, _ = rnnjax.rnn(cell, params["rnn"], xs)
        h = cell.output(carry)
        return h @ params["dense"]["kernel"] + params["dense"]["bias"]

    return cell, predict


def train_one(kind: str, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cell, predict = make_model(kind, args.hidden)
    k_rnn, k_dense, k_run = jax.random.split(jax.random.key(args.seed), 3)
    params = {
        "rnn": cell.init(k_rnn, 1),
        "dense": {
            "kernel": jax.nn.initializers.glorot_uniform()(k_dense, (args.hidden, 1))[:, 0],
            "bias": jnp.zeros(()),
        },
    }

    def loss_fn(params: Any, batch: Any, key: jax.Array) -> jax.Array:
        return jnp.mean((predict(params, batch["xs"]) - batch["ys"]) ** 2)

    trainer = training.make_trainer(loss_fn, optax.adam(args.learning_rate))
    get_batch = training.epoch_batches(data["train"], args.batch_size, seed=args.seed)
    predict_jit = jax.jit(predict)

    def evaluate(params: Any) -> dict[str, float]:
        return {"val_rmse_scaled": rmse(predict_jit(params, data["val"]["xs"]), data["val"]["ys"])}

    # The params of the best validation score, checkpointed with the run: a resumed run
    # reports the same model as an uninterrupted one.
    best = training.KeepBest("val_rmse_scaled")

    # A run interrupted and started again with the same settings resumes from its checkpoint.
    run_name = (
        f"{args.dataset}-{kind}-{args.target}-w{args.window}-h{args.hidden}"
        f"-b{args.batch_size}-lr{args.learning_rate:g}-seed{args.seed}"
    )
    out = Path(args.out)
    training.fit(
        trainer,
        trainer.init(params, k_run),
        get_batch,
        args.steps,
        checkpoint_dir=out / "checkpoints" / run_name,
        checkpoint_every=args.eval_every,
        metrics_path=out / f"{run_name}-metrics.jsonl",
        log_every=25,
        evaluate=evaluate,
        eval_every=args.eval_every,
        keep_best=best,
        progress=not args.no_progress,
    )
    return {"params": best.params, "predict": predict_jit, "val_rmse_scaled": best.score}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=sorted(SEASON), default="sunspots")
    parser.add_argument("--cells", default="simple_rnn,lstm,gru", help="comma-separated cells")
    parser.add_argument("--window", type=int, default=24, help="past values the model sees")
    parser.add_argument(
        "--target",
        choices=["level", "change"],
        help="predict the next value or its change from the last (default: level for sunspots,"
        " change for co2)",
    )
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/forecast", help="plots, metrics, checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.hidden, args.eval_every = 30, 8, 10
    kinds = args.cells.split(",")
    unknown = sorted(set(kinds) - set(CELLS))
    if unknown:
        parser.error(f"--cells: unknown {unknown}; choose from {sorted(CELLS)}")

    series = load_series(args.dataset)
    xs, ys = windows(series, args.window)
    parts = split(len(ys), validation=0.15, test=0.15)
    # "level": standardised values in, the next value out. "change": each window relative to
    # its last value in, the change from it out, so a trending series (CO2) never leaves the
    # range seen in training. Offsets and scale are fit on the training part only.
    target = args.target = args.target or TARGET[args.dataset]
    train_values = series[: parts[0].stop + args.window]
    if target == "level":
        offset = np.full((len(ys), 1, 1), train_values.mean(), np.float32)
        scale = float(train_values.std())
    else:
        offset = xs[:, -1:, :]
        scale = float(np.std(np.diff(train_values)))
    data = {
        name: {
            "xs": (xs[part] - offset[part]) / scale,
            "ys": (ys[part] - offset[part, 0, 0]) / scale,
        }
        for name, part in zip(("train", "val", "test"), parts, strict=True)
    }
    test_xs, test_ys = xs[parts[2]], ys[parts[2]]
    season = SEASON[args.dataset]
    report: dict[str, Any] = {
        "dataset": args.dataset,
        "target": target,
        "points": len(series),
        "train/val/test windows": [p.stop - p.start for p in parts],
        "persistence_test_rmse": rmse(test_xs[:, -1, 0], test_ys),
        f"seasonal_{season}_test_rmse": rmse(test_xs[:, -season, 0], test_ys),
    }
    forecasts = {}
    for kind in kinds:
        start = time.perf_counter()
        result = train_one(kind, data, args)
        scaled = result["predict"](result["params"], data["test"]["xs"])
        forecasts[kind] = offset[parts[2], 0, 0] + np.asarray(scaled) * scale
        report[f"{kind}_val_rmse"] = result["val_rmse_scaled"] * scale
        report[f"{kind}_test_rmse"] = rmse(forecasts[kind], test_ys)
        report[f"{kind}_seconds"] = round(time.perf_counter() - start, 1)
        print(f"{kind}: test RMSE {report[f'{kind}_test_rmse']:.3f}", flush=True)

    best = min(kinds, key=lambda kind: report[f"{kind}_val_rmse"])  # chosen on validation
    report["best_on_validation"] = best
    report["best_beats_persistence"] = report[f"{best}_test_rmse"] < report["persistence_test_rmse"]
    print(json.dumps(report, indent=2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.dataset}-report.json").write_text(json.dumps(report, indent=2))
    plot(out / f"{args.dataset}-forecast.png", args.dataset, test_ys, test_xs, forecasts, report)


def plot(path: Path, dataset: str, truth: np.ndarray, test_xs: np.ndarray, forecasts, report):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.5), constrained_layout=True)
    steps = np.arange(len(truth))
    axis.plot(steps, truth, color="black", linewidth=2, label="truth")
    axis.plot(
        steps,
        test_xs[:, -1, 0],
        color="grey",
        linestyle=":",
        label=f"persistence (RMSE {report['persistence_test_rmse']:.2f})",
    )
    for kind, forecast in forecasts.items():
        axis.plot(steps, forecast, label=f"{kind} (RMSE {report[f'{kind}_test_rmse']:.2f})")
    unit = "year" if dataset == "sunspots" else "month"
    axis.set(
        title=f"{dataset}: one-step-ahead forecasts on the test period",
        xlabel=f"test {unit}",
        ylabel="sunspot number" if dataset == "sunspots" else "CO2 (ppm)",
    )
    axis.legend(frameon=False)
    figure.savefig(path, dpi=120)
    print(f"saved {path}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # fit saved a checkpoint and said how to resume
        sys.exit(130)
