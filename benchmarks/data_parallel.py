"""Steps per second of the example trainers, data-parallel on 1..N devices and processes.

Runs an example trainer unchanged (``examples/forecast.py`` or ``examples/word_language.py``),
with its ``rnnjax.training.fit`` given ``mesh=data_parallel_mesh()``, in fresh processes on
simulated CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count``), one process or
several on 127.0.0.1 (``jax.distributed``, gloo). Timed: the steps after the first
``--warmup`` (compilation), as steps per second (wall clock of process 0) and as CPU
milliseconds per step (all processes and threads: less sensitive to other load on a shared
machine); with ``--repeats N`` each cell is the median of N runs, taken round-robin.

    python benchmarks/data_parallel.py                          # both trainers, the grid below
    python benchmarks/data_parallel.py --trainers forecast --steps 200 --repeats 3

The grid: no mesh on one device (the example as shipped), then a mesh over 1, 2 and 4 devices
in one process, and 2 processes with 1 and with 2 devices each. Simulated devices share the
machine's cores: the figures show the overhead of the mesh and of crossing processes, not a
speed-up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import runpy
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TRAINERS = {
    "forecast": ["examples/forecast.py", "--cells", "lstm"],
    "word_language": ["examples/word_language.py"],
}
GRID = [  # (processes, devices per process, mesh)
    (1, 1, False),
    (1, 1, True),
    (1, 2, True),
    (1, 4, True),
    (2, 1, True),
    (2, 2, True),
]


def child(args: argparse.Namespace) -> None:
    """One process of a run: the example's ``main`` with ``fit(..., mesh=...)``."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import rnnjax.training as training

    if args.processes > 1:
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{args.port}",
            num_processes=args.processes,
            process_id=args.process_id,
        )
    mesh = training.data_parallel_mesh() if args.mesh else None
    fit, marks = training.fit, {}

    def timed_fit(trainer: Any, state: Any, get_batch: Any, num_steps: int, **options: Any) -> Any:
        def timed_batches(step: int) -> Any:  # marks the window warmup .. num_steps - 1
            if step in (args.warmup, num_steps - 1):
                marks[step] = (time.perf_counter(), time.process_time())
            return get_batch(step)

        state = fit(trainer, state, timed_batches, num_steps, mesh=mesh, **options)
        (wall0, cpu0), (wall1, cpu1) = marks[args.warmup], marks[num_steps - 1]
        timing = {"steps": num_steps - 1 - args.warmup, "wall": wall1 - wall0, "cpu": cpu1 - cpu0}
        Path(args.out, f"timing-{args.process_id}.json").write_text(json.dumps(timing))
        return state

    training.fit = timed_fit
    script, *flags = TRAINERS[args.trainer]
    steps = ["--steps", str(args.steps), "--eval-every", str(10 * args.steps)]
    if args.trainer != "forecast":
        steps = steps[:2]  # word_language evaluates every 500 steps
    sys.argv = [script, *flags, *steps, "--out", args.out, "--no-progress"]
    runpy.run_path(str(ROOT / script), run_name="__main__")


def rates(out: Path, processes: int) -> tuple[float, float]:
    """Steps per second (process 0's wall clock) and CPU milliseconds per step (all processes,
    all their threads: what the run costs, less sensitive to other load than the wall clock)."""
    timings = [json.loads(Path(out, f"timing-{i}.json").read_text()) for i in range(processes)]
    steps = timings[0]["steps"]
    return steps / timings[0]["wall"], 1000 * sum(t["cpu"] for t in timings) / steps


def launch(
    trainer: str, processes: int, devices: int, mesh: bool, args: argparse.Namespace
) -> tuple[float, float]:
    """Runs one configuration in fresh processes; always ends them. Returns :func:`rates`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, __file__, "--child", "--trainer", trainer, "--out", out]
        command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
        command += ["--processes", str(processes), "--port", str(port)]
        command += ["--mesh"] if mesh else []
        running = []
        try:
            for index in range(processes):
                running.append(
                    subprocess.Popen(
                        [*command, "--process-id", str(index)],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                        start_new_session=True,
                    )
                )
            errors = [process.communicate(timeout=args.timeout)[1] for process in running]
            for process, error in zip(running, errors, strict=True):
                if process.returncode:
                    raise RuntimeError(f"{trainer} failed:\n{error[-3000:]}")
        finally:
            for process in running:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        return rates(Path(out), processes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trainers", default="forecast,word_language")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50, help="steps left out of the rate")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; the median")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trainer", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mesh", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # so runs get ended
    trainers = args.trainers.split(",")
    measured: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
    for _ in range(args.repeats):  # round-robin over the grid, so drift hits every cell alike
        for trainer, (processes, devices, mesh) in itertools.product(trainers, GRID):
            rate = launch(trainer, processes, devices, mesh, args)
            measured.setdefault((trainer, processes, devices, mesh), []).append(rate)
            print(f"{trainer} {processes} x {devices} mesh={mesh}: {rate}", file=sys.stderr)
    heads = [f"{t} steps/s | {t} CPU ms/step" for t in trainers]
    print("| processes x devices | mesh | " + " | ".join(heads) + " |")
    print("|---|---|" + "---|---|" * len(trainers))
    for processes, devices, mesh in GRID:
        cells = []
        for trainer in trainers:
            runs = measured[trainer, processes, devices, mesh]
            cells.append(f"{statistics.median(r[0] for r in runs):.0f}")
            cells.append(f"{statistics.median(r[1] for r in runs):.1f}")
        print(f"| {processes} x {devices} | {'yes' if mesh else 'no'} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
