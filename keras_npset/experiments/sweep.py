"""Grids of training runs, one after another, on local worker processes, or on Ray.

A grid is a list of `Run`s (a validated `Config` plus labels such as dataset,
method and seed). `run_grid` trains each into its own `output.dir` with
`keras_npset.experiments.run.run(cfg, resume=True)`, on one of three backends:

- serial (`workers=0`, `ray=None`): in this process, one run after another;
- local worker processes (`workers=N`): each run in a fresh Python process
  (spawned, never forked: TensorFlow is not fork-safe), at most N at a time,
  each limited to `cpus_per_run` TensorFlow threads (default: the cores / N);
- Ray (`ray="local"` or a cluster address): each run is a Ray task asking for
  `cpus_per_run` CPUs (default 1), in a worker process of its own. Ray is an
  optional dependency (`pip install keras-npset[sweep]`), imported only here.

Every run is fully determined by its config (the seed included), so every
backend gives the same per-run results. Faults:

- a finished run (same config in its folder and a complete `results.json`) is
  reused, never trained again, so re-running the same grid continues it;
- a run whose worker process dies (killed, out of memory, a lost Ray node) is
  started again, up to `retries` times, and resumes from the checkpoint of its
  last completed epoch;
- a run that raises is reported with its error (the worker's output is in
  `<output.dir>/worker.log`) and the others go on;
- Ctrl-C stops every worker; the same command continues from the checkpoints.

A folder that holds a run of a *different* config fails that run, unless
`move_aside=True` renames it to `<output.dir>.old-<timestamp>` (nothing is deleted).

Command line (`python -m keras_npset.experiments.sweep --help`):

    python -m keras_npset.experiments.sweep --config configs/lung_discrete.toml \\
        --set data.path=/data/lung_discrete.mat --methods set npset --seeds 0 1 2 \\
        --grid 'model.alpha=[0.02, 0.04]' --runs-dir runs/alpha --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_npset.experiments import run_dir  # noqa: E402
from keras_npset.experiments.config import (  # noqa: E402
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_value,
)
from keras_npset.validation import check_int  # noqa: E402

# Test hook: "<epoch>:<marker file>" makes the first worker that starts that epoch
# (and creates the marker) exit at once, as a killed process would.
CRASH_TEST_ENV = "KERAS_NPSET_SWEEP_CRASH_TEST"
EXIT_ORPHANED = 75  # a worker whose parent died; its run resumes from its checkpoint
WORKER_LOG = "worker.log"
_THREAD_ENV = ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")


@dataclasses.dataclass
class Run:
    """One run of a grid: its config and the labels that name it in reports."""

    config: Config
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        cfg = self.config
        data = os.path.splitext(os.path.basename(cfg.data.path))[0] or "synthetic"
        self.labels = {
            "dataset": data,
            "method": cfg.model.method,
            "seed": cfg.train.seed,
            **self.labels,
        }

    @property
    def name(self) -> str:
        """`dataset method seed<k>` and any other labels, for progress lines."""
        lab = self.labels
        rest = [f"{k}={v}" for k, v in lab.items() if k not in ("dataset", "method", "seed")]
        return " ".join([str(lab["dataset"]), str(lab["method"]), f"seed{lab['seed']}", *rest])


@dataclasses.dataclass
class Outcome:
    """What happened to one run: `status` is "trained", "reused" or "failed"."""

    run: Run
    status: str
    results: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    seconds: float = 0.0


@dataclasses.dataclass
class SweepReport:
    """The outcome of every run that ended, in grid order; `interrupted` after Ctrl-C."""

    outcomes: list[Outcome]
    interrupted: bool = False

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def results(self) -> list[dict[str, Any]]:
        return [o.results for o in self.outcomes if o.results is not None]


# ---------------------------------------------------------------------------------------
# Building a grid


def _path_value(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9._,=+\-\[\]]", "_", text)


def grid(
    configs: Sequence[str | None],
    runs_dir: str,
    methods: Sequence[str] = (),
    seeds: Sequence[int] = (0,),
    axes: dict[str, list[Any]] | None = None,
    overrides: Sequence[str] = (),
) -> list[Run]:
    """Every combination of config file x method x axis values x seed, as `Run`s.

    Run `k` goes to `runs_dir/<config name>/<method>/<key>=<value>.../seed<k>`.
    Every config is loaded and validated here, before anything runs.

    Args:
        configs: TOML config files (`None`: the built-in quick run, named "default").
        runs_dir: the folder that receives one folder per run.
        methods: `model.method` values; empty keeps each config's own. Defaults to `()`.
        seeds: `train.seed` values. Defaults to `(0,)`.
        axes: `{key: [values]}` swept on top, e.g. `{"model.alpha": [0.02, 0.04]}`.
            Defaults to `None`.
        overrides: `KEY=VALUE` applied to every run (before the grid's own keys).
            Defaults to `()`.

    Raises:
        ConfigError: (a `ValueError`) for an invalid config, override or axis value.
    """
    axes = dict(axes or {})
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"A grid axis needs a non-empty list of values. Received: {key}={values!r}"
            )
    runs = []
    for path in configs:
        name = os.path.splitext(os.path.basename(path))[0] if path else "default"
        for method in methods or [None]:
            for combo in itertools.product(*axes.values()):
                chosen = dict(zip(axes, combo, strict=True))
                parts = [name, *([method] if method else [])]
                parts += [f"{k}={_path_value(v)}" for k, v in chosen.items()]
                for seed in seeds:
                    out = os.path.join(runs_dir, *parts, f"seed{seed}")
                    items = [
                        "train.verbose=0",
                        *overrides,
                        *([f"model.method={method}"] if method else []),
                        *[f"{k}={_toml(v)}" for k, v in chosen.items()],
                        f"train.seed={seed}",
                        f"output.dir={json.dumps(out)}",
                    ]
                    cfg = load_config(path, items)
                    labels = {"dataset": name, "method": cfg.model.method, "seed": seed, **chosen}
                    runs.append(Run(cfg, labels))
    return runs


def _toml(value: Any) -> str:
    """A TOML literal for a value read back from a TOML array (for `--set`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


# ---------------------------------------------------------------------------------------
# One run, wherever it executes


def _read_results(out: str) -> dict[str, Any]:
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def _crash_callback():
    """The test hook of CRASH_TEST_ENV as a Keras callback, or None."""
    spec = os.environ.get(CRASH_TEST_ENV)
    if not spec:
        return None
    import keras

    epoch_text, marker = spec.split(":", 1)
    crash_epoch = int(epoch_text)

    class CrashOnce(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch != crash_epoch:
                return
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os._exit(3)

    return CrashOnce()


def execute(config: dict[str, Any], in_worker: bool = False) -> dict[str, Any]:
    """Trains (or resumes) one run from `config_to_dict` tables; returns its results.

    Holds the run folder's lock while it trains, so two sweeps never write into
    the same run. A complete run of the same config is returned as it is.

    Raises:
        ValueError: if the folder holds another run or another process holds its lock.
    """
    from keras_npset.experiments import run as run_lib

    cfg = config_from_dict(config)
    out = cfg.output.dir
    run_dir.check_writable(out)
    fd = run_dir.lock(out)
    try:
        if run_dir.inspect(out, cfg) == "complete":
            return _read_results(out)
        run_dir.remove_stale_temporaries(out)
        hook = _crash_callback() if in_worker else None
        return run_lib.run(cfg, extra_callbacks=[hook] if hook else None, log=None, resume=True)
    finally:
        os.close(fd)


def _error_text(error: BaseException) -> str:
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _limit_threads(threads: int | None) -> None:
    """Caps TensorFlow's thread pools; effective before TensorFlow's first op."""
    if not threads:
        return
    from keras_npset.experiments.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:  # already initialized (the env vars then did it)
        pass


def _exit_with_parent(interval: float = 1.0) -> None:
    """Ends this worker as soon as the process that started it is gone.

    A grid stopped with Ctrl-C or SIGTERM stops its workers itself; one whose parent
    was killed outright (SIGKILL, OOM) would leave them training on, holding their run
    folders' locks, so that the same command could not continue the grid. The run
    resumes from its checkpoint next time.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_main() -> int:
    """Entry of a worker process: task JSON on stdin, one JSON message on fd argv[1]."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _exit_with_parent()
    reply_fd = int(sys.argv[1])
    task = json.load(sys.stdin)
    from keras_npset.experiments.quiet import import_tensorflow_quietly

    import_tensorflow_quietly(without_sklearn=True)  # a run never uses keras.wrappers
    _limit_threads(task.get("threads"))
    message = _execute_reply(task)
    with os.fdopen(reply_fd, "w") as f:
        json.dump(message, f, default=str)
    return 0


def _ray_task(task: dict[str, Any]) -> dict[str, Any]:
    """A run as a Ray task, in a worker process of its own (`max_calls=1`)."""
    if task.get("cwd") and os.path.isdir(task["cwd"]):
        os.chdir(task["cwd"])
    out = task["config"]["output"]["dir"]
    os.makedirs(out, exist_ok=True)
    log = os.open(os.path.join(out, WORKER_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.dup2(log, 1)
    os.dup2(log, 2)
    _limit_threads(task.get("threads"))
    return _execute_reply(task)


def _execute_reply(task: dict[str, Any]) -> dict[str, Any]:
    """A worker's reply: `{"results": ...}` or `{"error": ...}`, and its own seconds."""
    start = time.monotonic()
    try:
        reply = {"results": execute(task["config"], in_worker=True)}
    except Exception as e:  # reported by the parent as this run's failure
        traceback.print_exc()
        reply = {"error": _error_text(e)}
    return {**reply, "seconds": time.monotonic() - start}


# ---------------------------------------------------------------------------------------
# The runner


def _fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _Progress:
    """One line per ended run, with a running count and an ETA from the trained runs."""

    def __init__(self, total: int, log: Callable[[str], None] | None):
        self.total, self.log = total, log
        self.done = self.trained = 0
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        if self.log:
            self.log(text)

    def ended(self, outcome: Outcome) -> None:
        self.done += 1
        run, r = outcome.run, outcome.results
        if outcome.status == "failed":
            text = f"FAILED {run.name}: {outcome.error}"
            if outcome.attempts:
                text += f" (log: {os.path.join(run.config.output.dir, WORKER_LOG)})"
        else:
            text = (
                f"{run.name}: max {r['max_test_accuracy']:.2f}% final "
                f"{r['final_test_accuracy']:.2f}%, hidden {r['hidden_units']}, "
                f"params {r['params']}"
            )
            if outcome.status == "reused":
                text += ", finished earlier (reused)"
            else:
                self.trained += 1
                text += f", {outcome.seconds:.1f}s"
                if outcome.attempts > 1 or r.get("resumed_at_epochs"):
                    resumed = ",".join(str(e) for e in r.get("resumed_at_epochs", []))
                    text += f" (attempt {outcome.attempts}, resumed at epoch {resumed or '-'})"
        elapsed = time.monotonic() - self.start
        left = self.total - self.done
        eta = (
            _fmt_seconds(elapsed / self.trained * left)
            if self.trained and left
            else ("0s" if not left else "?")
        )
        self.say(f"[{self.done}/{self.total}] {text} | {_fmt_seconds(elapsed)} elapsed, ETA {eta}")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_grid(
    runs: Sequence[Run],
    workers: int = 0,
    ray: str | None = None,
    cpus_per_run: int | None = None,
    retries: int = 2,
    move_aside: bool = False,
    on_result: Callable[[int, Outcome], None] | None = None,
    log: Callable[[str], None] | None = print,
) -> SweepReport:
    """Trains every run of a grid that is not finished yet (see the module docstring).

    Args:
        runs: the grid (see `grid`); every `output.dir` must be distinct.
        workers: 0 trains in this process, one run after another; N >= 1 trains each
            run in its own spawned process, N at a time. Defaults to 0.
        ray: `"local"` starts a Ray cluster on this machine, any other value is the
            address of a running one (`"auto"`, `"ray://host:10001"`, `"host:6379"`);
            each run is a Ray task. Exclusive with `workers`. Defaults to `None`.
        cpus_per_run: TensorFlow threads of each run (Ray: the CPUs each task asks
            for). Defaults to the cores / `workers` (processes), 1 (Ray), and
            TensorFlow's default (serial).
        retries: how often a run whose worker died is started again (it resumes from
            its checkpoint). Defaults to 2.
        move_aside: rename a run folder holding another config's run to
            `<dir>.old-<timestamp>` and train there, instead of failing the run.
            Defaults to `False`.
        on_result: called with (index in `runs`, `Outcome`) as each run ends.
            Defaults to `None`.
        log: called with one line per ended run and a few status lines; `None` for
            silence. Defaults to `print`.

    Returns:
        A `SweepReport`; after Ctrl-C (KeyboardInterrupt) its `interrupted` is True
        and it holds the runs that ended before.

    Raises:
        ValueError: for invalid arguments (named with the received value).
    """
    check_int("workers", workers, 0)
    check_int("retries", retries, 0)
    if cpus_per_run is not None:
        check_int("cpus_per_run", cpus_per_run, 1)
    if ray is not None and workers:
        raise ValueError(
            f"Give either `workers` or `ray`, not both. Received: workers={workers}, ray={ray!r}"
        )
    if ray is not None and (not isinstance(ray, str) or not ray):
        raise ValueError(f"`ray` must be 'local' or a cluster address. Received: ray={ray!r}")
    dirs = [os.path.normpath(os.path.abspath(r.config.output.dir)) for r in runs]
    if len(set(dirs)) != len(dirs):
        twice = sorted({d for d in dirs if dirs.count(d) > 1})
        raise ValueError(
            f"Every run needs its own output.dir. Received: output.dir={twice[0]!r} "
            f"for {dirs.count(twice[0])} runs"
        )

    if ray is not None:  # first, so that a missing Ray or a bad address fails at once
        backend = _RayBackend(ray, cpus_per_run or 1)
    elif workers:
        threads = cpus_per_run or max(1, _cores() // workers)
        backend = _ProcessBackend(workers, threads)
    else:
        backend = _SerialBackend()
    progress = _Progress(len(runs), log)
    outcomes: dict[int, Outcome] = {}

    def ended(i: int, outcome: Outcome) -> None:
        outcomes[i] = outcome
        progress.ended(outcome)
        if on_result:
            on_result(i, outcome)

    interrupted = False
    try:
        todo = []
        for i, run in enumerate(runs):  # finished runs are reused without starting a worker
            out = run.config.output.dir
            try:
                state = run_dir.inspect(out, run.config)
            except ValueError as e:
                if not move_aside:
                    ended(i, Outcome(run, "failed", error=_error_text(e)))
                    continue
                moved = run_dir.move_aside(out)
                progress.say(f"{run.name}: {out} held another run, moved to {moved}")
                state = "new"
            if state == "complete":
                ended(i, Outcome(run, "reused", results=_read_results(out)))
            else:
                todo.append(i)
        if todo:
            progress.say(
                f"sweep: {len(todo)} of {len(runs)} runs to train ({len(runs) - len(todo)} "
                f"finished or failed already), {backend.describe()}"
            )
        backend.run([(i, runs[i]) for i in todo], retries, ended, progress)
    except KeyboardInterrupt:
        interrupted = True
        progress.say(
            f"interrupted: {progress.done} of {len(runs)} runs ended; the same command "
            "continues the grid from the runs' checkpoints"
        )
    finally:
        backend.close()
    return SweepReport([outcomes[i] for i in sorted(outcomes)], interrupted)


class _SerialBackend:
    def describe(self) -> str:
        return "one after another in this process"

    def run(self, items, retries, ended, progress) -> None:
        import keras

        for i, run in items:
            start = time.monotonic()
            keras.backend.clear_session()  # as a fresh process would start
            try:
                results = execute(config_to_dict(run.config))
            except Exception as e:
                ended(i, Outcome(run, "failed", error=_error_text(e), attempts=1))
                continue
            ended(i, Outcome(run, "trained", results, attempts=1, seconds=time.monotonic() - start))

    def close(self) -> None:
        pass


def _reply_outcome(run: Run, message: dict[str, Any], attempts: int, seconds: float) -> Outcome:
    """The outcome of a worker's reply (see `_execute_reply`)."""
    if "results" in message:
        return Outcome(run, "trained", message["results"], None, attempts, seconds)
    return Outcome(run, "failed", None, message["error"], attempts, seconds)


def _task(run: Run, threads: int | None) -> dict[str, Any]:
    return {"config": config_to_dict(run.config), "threads": threads, "cwd": os.getcwd()}


class _Worker:
    """A worker process and its reply pipe, drained as it goes (a reply may exceed the
    pipe's buffer, and the worker would block writing it)."""

    def __init__(self, proc: subprocess.Popen, reply_fd: int):
        self.proc, self.fd, self.chunks = proc, reply_fd, []
        self.start = time.monotonic()
        os.set_blocking(reply_fd, False)

    def drain(self) -> None:
        while self.fd >= 0:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:  # the worker closed its end
                return
            self.chunks.append(chunk)

    def reply(self) -> dict[str, Any] | None:
        """The worker's message once it has exited; None if it died before sending one."""
        self.drain()
        self.close()
        try:
            message = json.loads(b"".join(self.chunks))
        except ValueError:  # nothing, or cut off by a kill
            return None
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _ProcessBackend:
    """Each run in a fresh `python` process (spawned), at most `workers` at a time."""

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads
        self.live: dict[int, _Worker] = {}

    def describe(self) -> str:
        plural = "es" if self.workers > 1 else ""
        return f"{self.workers} worker process{plural}, {self.threads} TensorFlow threads each"

    def _start(self, run: Run) -> _Worker:
        out = run.config.output.dir
        os.makedirs(out, exist_ok=True)
        env = {**os.environ, **{k: str(self.threads) for k in _THREAD_ENV}}
        env["TF_NUM_INTEROP_THREADS"] = str(min(self.threads, 2))
        read_fd, write_fd = os.pipe()
        code = (
            "from keras_npset.experiments import quiet, sweep; quiet.exit_now(sweep._worker_main())"
        )
        try:
            with open(os.path.join(out, WORKER_LOG), "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-c", code, str(write_fd)],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=log,
                    env=env,
                    pass_fds=(write_fd,),
                    start_new_session=True,  # Ctrl-C reaches the parent only; it stops them
                )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        worker = _Worker(proc, read_fd)
        proc.stdin.write(json.dumps(_task(run, self.threads)).encode())
        proc.stdin.close()
        return worker

    def run(self, items, retries, ended, progress) -> None:
        queue = list(items)
        attempts = {i: 0 for i, _ in items}
        runs = dict(items)
        while queue or self.live:
            while queue and len(self.live) < self.workers:
                i, run = queue.pop(0)
                attempts[i] += 1
                self.live[i] = self._start(run)
            time.sleep(0.1)
            for i, worker in list(self.live.items()):
                worker.drain()
                if worker.proc.poll() is None:
                    continue
                del self.live[i]
                run, message = runs[i], worker.reply()
                seconds = time.monotonic() - worker.start
                code = _exit_text(worker.proc.returncode)
                if message:
                    ended(i, _reply_outcome(run, message, attempts[i], seconds))
                elif attempts[i] <= retries:
                    progress.say(
                        f"{run.name}: worker died ({code}); starting it again from its "
                        f"checkpoint (attempt {attempts[i] + 1} of {retries + 1})"
                    )
                    queue.insert(0, (i, run))
                else:
                    error = f"worker died ({code}) {attempts[i]} times"
                    ended(i, Outcome(run, "failed", None, error, attempts[i], seconds))

    def close(self) -> None:
        for worker in self.live.values():
            if worker.proc.poll() is None:
                worker.proc.terminate()
        deadline = time.monotonic() + 10
        for worker in self.live.values():
            try:
                worker.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
            worker.close()
        self.live.clear()


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fails at once where nothing listens at a `host:port` address (Ray would retry on)."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address)
    if not match:  # "local", "auto" and the like
        return
    import socket

    try:
        socket.create_connection((match[1], int(match[2])), timeout=timeout).close()
    except OSError as e:
        raise ValueError(
            f"No Ray cluster answers at {match[1]}:{match[2]} ({_error_text(e)}). "
            f"Received: ray={address!r}"
        ) from None


class _RayBackend:
    """Each run a Ray task with `cpus` CPUs, in a worker process of its own."""

    def __init__(self, address: str, cpus: int):
        try:
            import ray
        except ImportError:
            raise ValueError(
                "The Ray backend needs Ray: pip install 'keras-npset[sweep]'. "
                f"Received: ray={address!r}"
            ) from None
        self.ray, self.cpus, self.pending = ray, cpus, {}
        self.started = False
        if not ray.is_initialized():
            _check_reachable(address)
            kwargs = {"include_dashboard": False} if address == "local" else {}
            try:
                ray.init(address=address, log_to_driver=False, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise ValueError(
                    f"Cannot start or reach a Ray cluster ({_error_text(e)}). "
                    f"Received: ray={address!r}"
                ) from None
            self.started = True
        env = {k: str(cpus) for k in _THREAD_ENV}
        env["TF_NUM_INTEROP_THREADS"] = str(min(cpus, 2))
        for key in (CRASH_TEST_ENV, "TF_CPP_MIN_LOG_LEVEL"):
            if key in os.environ:
                env[key] = os.environ[key]
        self.remote = ray.remote(num_cpus=cpus, max_calls=1, max_retries=0)(_ray_task).options(
            runtime_env={"env_vars": env}
        )

    def describe(self) -> str:
        total = self.ray.cluster_resources().get("CPU", 0)
        return f"Ray tasks of {self.cpus} CPU each on a cluster of {total:g} CPUs"

    def run(self, items, retries, ended, progress) -> None:
        ray = self.ray
        runs = dict(items)
        attempts = {i: 0 for i, _ in items}

        def submit(i):
            attempts[i] += 1
            ref = self.remote.remote(_task(runs[i], self.cpus))
            self.pending[ref] = (i, time.monotonic())

        for i in runs:
            submit(i)
        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=1.0)
            for ref in ready:
                i, start = self.pending.pop(ref)
                run, seconds = runs[i], time.monotonic() - start
                try:
                    message = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # not expected: _ray_task catches
                    ended(i, Outcome(run, "failed", None, _error_text(e), attempts[i], seconds))
                    continue
                except ray.exceptions.RayError as e:  # the worker or its node died
                    if attempts[i] <= retries:
                        progress.say(
                            f"{run.name}: Ray worker died ({type(e).__name__}); starting it "
                            f"again from its checkpoint (attempt {attempts[i] + 1} of "
                            f"{retries + 1})"
                        )
                        submit(i)
                    else:
                        error = f"Ray worker died {attempts[i]} times ({_error_text(e)})"
                        ended(i, Outcome(run, "failed", None, error, attempts[i], seconds))
                    continue
                # The seconds since the task started, not since it was queued.
                ended(i, _reply_outcome(run, message, attempts[i], message["seconds"]))

    def close(self) -> None:
        for ref in self.pending:
            self.ray.cancel(ref, force=True)
        self.pending.clear()
        if self.started:
            self.ray.shutdown()


# ---------------------------------------------------------------------------------------
# Command line


def _summary(report: SweepReport) -> list[dict[str, Any]]:
    rows = []
    for o in report.outcomes:
        row = {**o.run.labels, "output_dir": o.run.config.output.dir, "status": o.status}
        if o.results is not None:
            r = o.results
            row.update(
                {
                    k: r.get(k)
                    for k in (
                        "max_test_accuracy",
                        "final_test_accuracy",
                        "hidden_units",
                        "params",
                        "neurons",
                        "total_seconds",
                        "resumed_at_epochs",
                    )
                    if k in r
                }
            )
        if o.error:
            row["error"] = o.error
        rows.append(row)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m keras_npset.experiments.sweep",
        description="Train a grid of runs: configs x methods x grid values x seeds.",
        epilog="Finished runs are reused and killed ones resume, so re-running the same "
        "command continues an interrupted grid. A summary of every run goes to "
        "RUNS_DIR/sweep.json.",
    )
    p.add_argument(
        "--config",
        dest="configs",
        nargs="+",
        metavar="FILE",
        help="TOML config files, one grid each (default: the built-in quick run)",
    )
    p.add_argument("--methods", nargs="+", default=[], help="model.method values")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="train.seed values")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=[V1,V2,...]",
        help="sweep a key over a TOML array of values, e.g. 'model.alpha=[0.02,0.04]' "
        "(repeatable; every combination runs)",
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a key in every run (repeatable)",
    )  # fmt: skip
    p.add_argument("--runs-dir", default="runs/sweep", help="where the run folders go")
    p.add_argument(
        "--workers", type=int, default=0, help="train N runs at a time in worker processes"
    )
    p.add_argument(
        "--ray", metavar="ADDRESS", help="run on a Ray cluster ('local' starts one here)"
    )
    p.add_argument(
        "--cpus-per-run", type=int, help="TensorFlow threads per run (Ray: CPUs per task)"
    )
    p.add_argument("--retries", type=int, default=2, help="restarts of a run whose worker died")
    p.add_argument(
        "--move-aside",
        action="store_true",
        help="move a run folder holding a different config to <dir>.old-<timestamp> "
        "(default: that run fails)",
    )
    return p.parse_args(argv)


def _parse_axes(items: list[str]) -> dict[str, list[Any]]:
    axes = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--grid must be KEY=[V1,V2,...]. Received: --grid {item!r}")
        values = parse_value(text.strip())
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"--grid needs a non-empty TOML array of values. Received: --grid {item!r}"
            )
        axes[key.strip()] = values
    return axes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs = grid(
            args.configs or [None],
            args.runs_dir,
            methods=args.methods,
            seeds=args.seeds,
            axes=_parse_axes(args.grid),
            overrides=args.overrides,
        )
    except ValueError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2

    summary_path = os.path.join(args.runs_dir, "sweep.json")
    ended: dict[int, Outcome] = {}

    def write(i: int, outcome: Outcome) -> None:
        # Imported here: run_grid checks its arguments before TensorFlow loads.
        from keras_npset.experiments import run as run_lib

        ended[i] = outcome
        partial = SweepReport([ended[k] for k in sorted(ended)])
        run_lib.write_json(summary_path, {"args": vars(args), "runs": _summary(partial)})

    try:
        with stop_on_sigterm():
            report = run_grid(
                runs,
                workers=args.workers,
                ray=args.ray,
                cpus_per_run=args.cpus_per_run,
                retries=args.retries,
                move_aside=args.move_aside,
                on_result=write,
            )
    except ValueError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while connecting to Ray, before any run started
        print("error: interrupted before any run started", file=sys.stderr)
        return 130
    if report.interrupted:
        return 130
    failed = report.failures
    print(
        f"{len(report.outcomes) - len(failed)} of {len(runs)} runs finished, {len(failed)} "
        f"failed; summary in {summary_path}"
    )
    return 1 if failed else 0


@contextlib.contextmanager
def stop_on_sigterm():
    """SIGTERM (`kill PID`) stops a grid like Ctrl-C: workers stopped, results kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
