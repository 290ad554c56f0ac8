"""benchmarks/common.py: the results writer every benchmark uses."""

import json
import pathlib

from benchmarks import common


def test_write_json_names_under_results_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", str(tmp_path / "results"))
    relative = common.write_json("sub/run.json", {"a": 1.5})
    assert pathlib.Path(relative) == tmp_path / "results" / "sub" / "run.json"
    absolute = common.write_json(str(tmp_path / "elsewhere" / "out.json"), {"b": 2})
    assert pathlib.Path(absolute) == tmp_path / "elsewhere" / "out.json"
    assert json.loads(pathlib.Path(relative).read_text()) == {"a": 1.5}
    assert json.loads(pathlib.Path(absolute).read_text()) == {"b": 2}
    # Atomic: no temporary file is left beside either result.
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["out.json"]
    assert sorted(p.name for p in (tmp_path / "results" / "sub").iterdir()) == ["run.json"]


def test_write_results_records_arguments_fields_rows_and_machine(tmp_path):
    import argparse

    args = argparse.Namespace(batch=2, output="x.json")
    path = common.write_results(str(tmp_path / "r.json"), args, [{"t": 0.5}], nnz=7)
    payload = json.loads(pathlib.Path(path).read_text())
    assert list(payload) == ["args", "nnz", "rows", "machine"]
    assert payload["args"] == {"batch": 2, "output": "x.json"}
    assert payload["nnz"] == 7 and payload["rows"] == [{"t": 0.5}]
    assert payload["machine"]["cpu_count"] >= 1


def test_markdown_table_has_header_separator_and_one_line_per_row():
    text = common.markdown_table(["a", "b"], [["1", "x"], ["22", "y"]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 22 | y |"]
