"""benchmarks/paper_recipe.py: the runs each study plans (training is reproduce_paper's runner)."""

import pytest

from benchmarks import paper_recipe as pr
from keras_npset.experiments.config import ConfigError


def test_plan_covers_each_study_variant(tmp_path):
    runs = pr.plan(["lung_discrete", "Yale"], "/data", str(tmp_path), [0, 1])
    criterion = [r for r in runs if r[0] == "criterion"]
    init = [r for r in runs if r[0] == "init"]
    # One seed-0 NPSET run per criterion and dataset, stopped after the last pruning event.
    assert [(v, d) for _, v, d, _ in criterion] == [
        (c, d) for d in ("lung_discrete", "Yale") for c in pr.CRITERIA
    ]
    for _, variant, _, cfg in criterion:
        assert cfg.model.method == "npset" and cfg.model.criterion == variant
        assert cfg.train.epochs == pr.PRUNING_EPOCHS and cfg.train.seed == 0
    # SET for each initialiser and seed, the paper's 100 epochs.
    assert len(init) == 2 * len(pr.INITIALIZERS) * 2
    assert {(v, cfg.train.seed) for _, v, _, cfg in init} == {
        (i, s) for i in pr.INITIALIZERS for s in (0, 1)
    }
    assert all(cfg.model.method == "set" and cfg.train.epochs == 100 for *_, cfg in init)
    # Every run reads the dataset's file, writes its own folder and defaults to the paper config.
    assert all(cfg.data.path == f"/data/{d}.mat" for _, _, d, cfg in runs)
    assert len({cfg.output.dir for *_, cfg in runs}) == len(runs)
    assert all(cfg.train.weight_decay == 0.0 for *_, cfg in runs)


def test_overrides_apply_to_every_run_and_studies_keep_their_own(tmp_path):
    runs = pr.plan(
        ["lung_discrete"],
        "/data",
        str(tmp_path),
        [0],
        ("criterion",),
        ("train.weight_decay=0.0002", "model.criterion=total"),
    )
    assert [v for _, v, _, _ in runs] == list(pr.CRITERIA)
    # The override reaches every run; a study's own setting wins over it.
    assert all(cfg.train.weight_decay == 0.0002 for *_, cfg in runs)
    assert [cfg.model.criterion for *_, cfg in runs] == list(pr.CRITERIA)


def test_a_bad_override_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="train.weight_decay"):
        pr.plan(
            ["lung_discrete"],
            "/data",
            str(tmp_path),
            [0],
            ("criterion",),
            ("train.weight_decay=-1",),
        )


def test_main_rejects_a_bad_override_in_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "lung_discrete.mat").write_bytes(b"")
    argv = ["--data-dir", str(data), "--runs-dir", str(tmp_path / "runs")]
    assert pr.main(argv + ["--set", "train.weight_decay=-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train.weight_decay" in err and err.count("\n") == 1
