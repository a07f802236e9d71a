"""docs/EXTENDING.md "Add a schedule", followed literally: its code registers a kind, its config
uses it, and the schedule reaches the config loader and the theoretical Table 2."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vcq import schedules
from vcq.config import ConfigError, k_sizes_for, load_config

ROOT = Path(__file__).resolve().parents[1]


def _section_blocks(lang: str) -> list[str]:
    text = (ROOT / "docs/EXTENDING.md").read_text()
    section = text.split("## Add a schedule", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.DOTALL)


@pytest.fixture
def registered(monkeypatch) -> str:
    """The walk-through's code run as if it were in vcq/schedules.py (undone after the test)."""
    (code,) = _section_blocks("python")
    namespace = {"np": np, "SHAPES": {}}
    exec(code, namespace)  # noqa: S102 (the documentation's own code)
    for name, shape in namespace["SHAPES"].items():
        monkeypatch.setitem(schedules.SHAPES, name, shape)
    return next(iter(namespace["SHAPES"]))


def _config(tmp_path: Path) -> Path:
    (block,) = _section_blocks("yaml")
    cfg = yaml.safe_load(block)
    cfg["extends"] = str(ROOT / "config" / cfg["extends"])  # the block sits in config/
    cfg["report"] = {"n_images": 1000, "reference_configs": []}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "c.yaml"


def test_a_registered_schedule_runs_through_config_and_theory(registered, tmp_path, run_step):
    cfg = load_config(_config(tmp_path))
    (schedule,) = [s for s in cfg["schedules"] if s["kind"] == registered]
    k = k_sizes_for(cfg, schedule["name"])
    assert k[0] == schedule["k_min"] and k[-1] == schedule["k_max"] and np.all(np.diff(k) >= 0)
    run_step("make_tables", "--config", tmp_path / "c.yaml", "--only-theory", "--out-dir", tmp_path)
    row = pd.read_csv(tmp_path / "table2_theory.csv").set_index("schedule").loc[schedule["name"]]
    assert row["k_mean"] == pytest.approx(k.mean(), abs=0.5)


def test_an_unregistered_kind_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"schedules\.1\.kind"):
        load_config(_config(tmp_path))
