"""keras_npset.experiments.sweep: the same per-run results serially, on worker processes and on Ray;
killed workers are restarted and resume; finished runs are reused; failures are reported.

One tiny grid (SET and NPSET on synthetic data, 4 epochs, hidden [16, 16]) is trained
serially once (module fixture); the other backends must reproduce it exactly.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_npset.experiments import run_dir, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 4
# alpha 0.25 prunes 16 -> 12 -> 9 at the start of epochs 1 and 2.
TINY = [
    "data.synthetic_samples=120",
    "data.synthetic_features=20",
    "model.hidden=[16,16]",
    "model.alpha=0.25",
    "model.start=1",
    "model.prune_epochs=1",
    f"train.epochs={EPOCHS}",
    "train.batch_size=16",
    "output.tensorboard=false",
    "output.save_model=false",
]
EXACT_KEYS = (
    "test_accuracy",
    "train_accuracy",
    "max_test_accuracy",
    "final_test_accuracy",
    "best_epoch",
    "hidden_units",
    "params",
    "params_per_layer",
    "neurons",
)


def _grid(runs_dir, *extra):
    return sweep.grid([None], str(runs_dir), ["set", "npset"], [0], overrides=[*TINY, *extra])


def _assert_same(a, b):
    assert [o.run.name for o in a.outcomes] == [o.run.name for o in b.outcomes]
    for oa, ob in zip(a.outcomes, b.outcomes, strict=True):
        for key in EXACT_KEYS:
            assert oa.results[key] == ob.results[key], (oa.run.name, key)
        # Losses agree to float rounding: TensorFlow's CPU kernels do not promise the last
        # bits (two runs of one config in one process can differ there too).
        assert oa.results["history"].keys() == ob.results["history"].keys()
        for key, values in oa.results["history"].items():
            np.testing.assert_allclose(values, ob.results["history"][key], rtol=1e-5)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    report = sweep.run_grid(_grid(tmp_path_factory.mktemp("serial")), log=None)
    assert [o.status for o in report.outcomes] == ["trained", "trained"]
    assert report.outcomes[1].results["hidden_units"] == [9, 9]  # NPSET pruned twice
    return report


def test_grid_names_labels_and_folders(tmp_path):
    runs = sweep.grid(
        [None],
        str(tmp_path),
        ["set"],
        [0, 1],
        axes={"model.alpha": [0.1, 0.2], "model.hidden": [[8, 8]]},
        overrides=TINY,
    )
    assert len(runs) == 4
    assert runs[1].labels == {
        "dataset": "default",
        "method": "set",
        "seed": 1,
        "model.alpha": 0.1,
        "model.hidden": [8, 8],
    }
    assert runs[1].config.model.hidden == [8, 8] and runs[1].config.train.seed == 1
    assert runs[1].config.output.dir == os.path.join(
        str(tmp_path), "default", "set", "model.alpha=0.1", "model.hidden=[8,8]", "seed1"
    )
    assert runs[2].name == "default set seed0 model.alpha=0.2 model.hidden=[8, 8]"


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"workers": -1}, "workers=-1"),
        ({"workers": 2, "ray": "local"}, "workers=2, ray='local'"),
        ({"cpus_per_run": 0}, "cpus_per_run=0"),
        ({"retries": "2"}, "retries='2'"),
    ],
)
def test_invalid_arguments_name_the_value(tmp_path, kwargs, expected):
    with pytest.raises(ValueError, match="Received: " + expected.replace("[", r"\[")):
        sweep.run_grid(_grid(tmp_path), log=None, **kwargs)


def test_two_runs_into_one_folder_are_refused(tmp_path):
    runs = _grid(tmp_path)
    runs[1].config.output.dir = runs[0].config.output.dir
    with pytest.raises(ValueError, match="Every run needs its own output.dir"):
        sweep.run_grid(runs, log=None)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--grid", "model.alpha=0.1"], "non-empty TOML array"),
        (["--grid", "model.alpha=[0.1, 7]"], "model.alpha"),
        (["--workers", "-2"], "Expected `workers` to be an integer >= 0. Received: workers=-2"),
        (["--cpus-per-run", "0"], "Received: cpus_per_run=0"),
        (["--workers", "2", "--ray", "local"], "not both"),
        (["--set", "model.zeta=2"], "model.zeta=2"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, expected):
    assert sweep.main([*argv, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err
    assert not os.listdir(tmp_path)


def test_finished_runs_are_reused_and_other_configs_refused(serial, tmp_path, capsys):
    runs_dir = serial.outcomes[0].run.config.output.dir.rsplit("/default/", 1)[0]
    lines = []
    again = sweep.run_grid(_grid(runs_dir), workers=2, log=lines.append)  # starts no worker
    assert [o.status for o in again.outcomes] == ["reused", "reused"]
    assert again.results == serial.results
    assert "finished earlier (reused)" in lines[0] and lines[-1].startswith("[2/2]")
    # A different config in the same folders fails those runs, and changes nothing.
    changed = sweep.run_grid(_grid(runs_dir, "model.zeta=0.2"), log=None)
    assert [o.status for o in changed.outcomes] == ["failed", "failed"]
    assert "model.zeta: 0.3 -> 0.2" in changed.outcomes[0].error
    assert sweep.run_grid(_grid(runs_dir), log=None).results == serial.results


def test_move_aside_trains_a_changed_run_and_keeps_the_old(tmp_path):
    runs = _grid(tmp_path, "train.epochs=1")[:1]
    sweep.run_grid(runs, log=None)
    runs = _grid(tmp_path, "train.epochs=2")[:1]
    report = sweep.run_grid(runs, move_aside=True, log=None)
    assert report.outcomes[0].status == "trained"
    assert len(report.outcomes[0].results["test_accuracy"]) == 2
    old = [n for n in os.listdir(tmp_path / "default" / "set") if n.startswith("seed0.old-")]
    assert len(old) == 1


def test_serial_interrupt_stops_and_the_same_grid_continues(serial, tmp_path):
    def stop(i, outcome):
        raise KeyboardInterrupt

    report = sweep.run_grid(_grid(tmp_path), on_result=stop, log=None)
    assert report.interrupted and [o.status for o in report.outcomes] == ["trained"]
    rest = sweep.run_grid(_grid(tmp_path), log=None)
    assert [o.status for o in rest.outcomes] == ["reused", "trained"]
    _assert_same(rest, serial)


def _crash_once(monkeypatch, tmp_path, epoch=2):
    marker = tmp_path / "crashed"
    monkeypatch.setenv(sweep.CRASH_TEST_ENV, f"{epoch}:{marker}")
    return marker


def _check_killed_run_resumed(report, lines, marker, serial, what):
    assert marker.exists(), "the crash hook never fired"
    resumed = [o for o in report.outcomes if o.results.get("resumed_at_epochs")]
    assert len(resumed) == 1 and resumed[0].attempts == 2
    # Killed as epoch 2 begins: the checkpoint of the first two epochs is written while
    # epoch 2 starts (TrainingStateCheckpoint(background=True)), so the kill may land
    # before it and leave the one of epoch 1. The run resumes exactly either way.
    assert resumed[0].results["resumed_at_epochs"] in ([1], [2])
    assert sum(f"{what} died" in line for line in lines) == 1
    _assert_same(report, serial)


def test_workers_match_serial_and_a_killed_worker_resumes(serial, tmp_path, monkeypatch):
    marker = _crash_once(monkeypatch, tmp_path)
    runs = _grid(tmp_path / "runs")
    # A third run fails (no such data file): reported, and the others go on.
    bad = sweep.grid([None], str(tmp_path / "bad"), ["set"], [0], overrides=TINY)[0]
    bad.config.data.path = str(tmp_path / "missing.mat")
    lines = []
    report = sweep.run_grid([bad, *runs], workers=2, log=lines.append)
    assert not report.interrupted
    failed = report.failures
    assert len(failed) == 1 and failed[0].run is bad and "missing.mat" in failed[0].error
    assert os.path.exists(os.path.join(bad.config.output.dir, sweep.WORKER_LOG))
    ok = sweep.SweepReport(report.outcomes[1:])
    _check_killed_run_resumed(ok, lines, marker, serial, "worker")
    assert any(f"FAILED default set seed0: {failed[0].error}" in line for line in lines)
    assert any("ETA" in line for line in lines)
    for o in ok.outcomes:  # no checkpoint or torn temporary left behind
        assert not run_dir.has_checkpoint(o.run.config.output.dir)


def test_ray_local_cluster_matches_serial_and_a_killed_task_resumes(serial, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[sweep]')")
    marker = _crash_once(monkeypatch, tmp_path)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        lines = []
        report = sweep.run_grid(_grid(tmp_path / "runs"), ray="local", log=lines.append)
        assert "Ray tasks of 1 CPU each on a cluster of 2 CPUs" in lines[0]
    finally:
        ray.shutdown()
    assert not report.failures and not report.interrupted
    _check_killed_run_resumed(report, lines, marker, serial, "Ray worker")


def test_cli_ctrl_c_stops_workers_and_the_same_command_continues(serial, tmp_path, capsys):
    # One run on one worker keeps it short; test_workers_... covers two at a time.
    # 40 epochs: a 4-epoch run could finish between its first checkpoint and the signal.
    args = ["--methods", "npset", "--runs-dir", str(tmp_path)]
    for item in [*TINY, "train.epochs=40"]:
        args += ["--set", item]
    argv = [sys.executable, "-m", "keras_npset.experiments.sweep", *args, "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A process started with SIGINT ignored (a background job, a pytest-xdist worker)
        # passes that on, and Python then raises no KeyboardInterrupt: restore the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    ckpt = tmp_path / "default" / "npset" / "seed0" / run_dir.CHECKPOINT_SUBDIR
    deadline = time.monotonic() + 180
    while not (ckpt / "checkpoint.json").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "the same command continues the grid" in stdout
    assert "Traceback" not in stderr
    # The worker is gone (no process still holds the run folder's lock).
    os.close(run_dir.lock(str(tmp_path / "default" / "npset" / "seed0")))

    # The same command continues it (in this process and serially, to keep the test short:
    # test_workers_... resumes in a worker process).
    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    assert "1 of 1 runs finished, 0 failed" in out and "resumed at epoch" in out
    [row] = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert row["status"] == "trained" and row["resumed_at_epochs"]
    # Exact equality of a resumed run with an uninterrupted one: test_workers_... above.
    assert row["hidden_units"] == serial.outcomes[1].results["hidden_units"]


def test_workers_exit_when_the_grid_process_is_killed(tmp_path):
    # SIGKILL gives the parent no chance to stop its workers: they must notice on their own
    # and release the run folder, so that the same command can continue the grid.
    args = ["--methods", "set", "--runs-dir", str(tmp_path), "--workers", "1"]
    for item in [*TINY, "train.epochs=400"]:
        args += ["--set", item]
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "keras_npset.experiments.sweep", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = tmp_path / "default" / "set" / "seed0"
    deadline = time.monotonic() + 180
    while not (out / run_dir.CHECKPOINT_SUBDIR / "checkpoint.json").exists():
        assert proc.poll() is None, "the grid ended before its run checkpointed"
        assert time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60
    while True:
        try:
            os.close(run_dir.lock(str(out)))
            break
        except ValueError:
            assert time.monotonic() < deadline, "the orphaned worker still holds the run"
            time.sleep(0.2)
    assert not (out / "results.json").exists()  # it stopped, it did not finish


def test_ray_is_optional(tmp_path, monkeypatch, capsys):
    import ast

    with open(sweep.__file__) as f:
        tree = ast.parse(f.read())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [a.name for n in top for a in n.names]
    names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not any(name.split(".")[0] == "ray" for name in names)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert sweep.main(["--ray", "local", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'keras-npset[sweep]'. Received: ray='local'" in err
    assert err.count("\n") == 1


def test_ray_address_where_nothing_listens_fails_at_once(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is not installed (pip install '.[sweep]')")
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    assert sweep.main(["--ray", f"127.0.0.1:{port}", "--runs-dir", str(tmp_path)]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert err.startswith("error: No Ray cluster answers at 127.0.0.1:") and err.count("\n") == 1


def test_a_reply_larger_than_the_pipe_buffer_arrives(tmp_path):
    # The worker would block writing a long results dict if the parent waited for it to exit.
    read_fd, write_fd = os.pipe()
    code = (
        "import json, os, sys\n"
        "with os.fdopen(int(sys.argv[1]), 'w') as f: json.dump({'error': 'x' * 300000}, f)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(write_fd)], pass_fds=(write_fd,))
    os.close(write_fd)
    worker = sweep._Worker(proc, read_fd)
    deadline = time.monotonic() + 60
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the worker blocked on its reply"
        worker.drain()
        time.sleep(0.01)
    assert worker.reply() == {"error": "x" * 300000}


def test_a_grid_prints_no_tensorflow_noise(tmp_path):
    # As a user runs it: TF_CPP_MIN_LOG_LEVEL unset. The grid process and its worker import
    # TensorFlow quietly (keras_npset.experiments.quiet): stderr stays empty.
    args = ["--methods", "set", "--runs-dir", str(tmp_path), "--workers", "1"]
    for item in [*TINY, "train.epochs=2"]:
        args += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "keras_npset.experiments.sweep", *args],
        env={**env, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 of 1 runs finished, 0 failed" in proc.stdout
    assert proc.stderr == ""
