"""The NPSET pruning schedule, including the paper's 41-event Table 3 setting."""

import csv
import pathlib

import numpy as np
import pytest

from keras_npset.schedules import PruningSchedule, final_width
from keras_npset.topology import neurons_to_remove


def test_paper_schedule_has_41_events():
    schedule = PruningSchedule(start=10, epochs=40)
    assert schedule.events(100) == list(range(10, 51))
    assert not schedule(9) and schedule(10) and schedule(50) and not schedule(51)


@pytest.mark.parametrize("units,expected", [(7000, 1320), (3000, 573), (1000, 198), (300, 66)])
def test_final_width_reproduces_table3(units, expected):
    assert final_width(units, 0.04, 41) == expected
    # 40 events would not (docs/paper.md): 1375 / 596 / 206 / 68.
    assert final_width(units, 0.04, 40) != expected


def test_table3_neuron_counts_for_every_dataset():
    tables = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "paper_tables.csv"
    lines = [line for line in tables.read_text().splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(lines))
    assert len(rows) == 15
    for row in rows:
        hidden = final_width(int(row["hidden"]), 0.04, 41)
        assert int(row["features"]) + 2 * hidden == int(row["npset_neurons"]), row["dataset"]


def test_final_width_is_the_iterated_floor():
    n = 777
    for _ in range(13):
        n -= int(np.floor(0.1 * n))
    assert final_width(777, 0.1, 13) == n
    assert final_width(10, 0.9, 5, min_units=3) == 3
    assert neurons_to_remove(3, 0.9, 3) == 0


def test_events_truncate_to_run_and_empty_schedule():
    assert PruningSchedule(2, 3).events(4) == [2, 3]
    assert PruningSchedule(5, 3).events(5) == []
    assert PruningSchedule(0, 0).events(10) == [0]


def test_last_event_with_and_without_the_run_length():
    assert PruningSchedule(10, 40).last_event() == 50
    assert PruningSchedule(10, 40).last_event(100) == 50
    assert PruningSchedule(10, 40).last_event(30) == 29  # the run ends first
    assert PruningSchedule(5, 3).last_event(5) == 4  # before start: no event at all
    with pytest.raises(ValueError, match="total_epochs"):
        PruningSchedule(1, 2).last_event(-1)


def test_config_round_trip():
    s = PruningSchedule(start=3, epochs=7)
    assert PruningSchedule.from_config(s.get_config()).events(20) == s.events(20)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"start": -1}, "start"),
        ({"epochs": -2}, "epochs"),
        ({"start": 1.5}, "start"),
        ({"epochs": "4"}, "epochs"),
        ({"start": True}, "start"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=rf"Received: {name}="):
        PruningSchedule(**kwargs)
