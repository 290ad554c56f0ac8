"""The NPSET paper's experiment app, built on the `keras_npset` library.

Nothing in the library imports this package. Modules, in the order a run uses them:

- `config`: typed defaults (the paper's setting), TOML files and `--set` overrides; imports
  no TensorFlow, so a bad config is rejected at once.
- `data`, `data_order`: scikit-feature loading, the paper's split and standardisation; the
  per-epoch batch order that makes a resumed run exact.
- `models`: the paper's MLPs and methods, and the topology callbacks of each method.
- `run`, `run_dir`: one run in small steps, from a config to its folder; what a folder holds.
- `sweep`: grids of runs, serially, on local worker processes or on Ray
  (`python -m keras_npset.experiments.sweep`).

This file imports nothing, so that importing `keras_npset.experiments.config` stays light.
"""
