"""Every shipped config file parses, and the dataset configs match the paper's Table 3 widths."""

import csv
import pathlib

import pytest

from keras_npset.experiments import config as C

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _paper_rows():
    with open(ROOT / "benchmarks" / "paper_tables.csv", newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


PAPER = _paper_rows()


def test_paper_tables_has_the_15_datasets():
    assert len(PAPER) == 15
    # Table 3 check: neurons = features + 2 * hidden for the FC/SET models.
    for row in PAPER:
        assert int(row["fc_neurons"]) == int(row["features"]) + 2 * int(row["hidden"])


def test_one_config_per_dataset_and_nothing_else():
    names = {p.stem for p in CONFIGS.glob("*.toml")}
    assert names == {row["dataset"] for row in PAPER} | {"default"}


@pytest.mark.parametrize("row", PAPER, ids=[r["dataset"] for r in PAPER])
def test_dataset_config(row):
    name = row["dataset"]
    cfg = C.load_config(str(CONFIGS / f"{name}.toml"))
    hidden = int(row["hidden"])
    assert cfg.model.hidden == [hidden, hidden]
    assert cfg.data.path == f"data/{name}.mat"
    # Only the differences: the schedule and optimiser are the paper's defaults.
    assert (cfg.model, cfg.train) == (
        C.ModelConfig(hidden=[hidden, hidden]),
        C.TrainConfig(),
    )


def test_default_toml_is_the_built_in_default():
    assert C.load_config(str(CONFIGS / "default.toml")) == C.load_config(None)
