"""Docs tables that restate config values are checked against the configs, so they cannot drift."""

import re
from pathlib import Path

import pytest

from vcq.config import load_config
from vcq.sampling import find_preset, presets_for


def _table(doc: str, name: str) -> list[dict]:
    """Rows of the Markdown table between `<!-- name:begin -->` and `<!-- name:end -->`."""
    text = Path(doc).read_text()
    block = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.DOTALL).group(1)
    lines = [line.strip().strip("|").split("|") for line in block.strip().splitlines()]
    header = [h.strip() for h in lines[0]]
    return [dict(zip(header, (c.strip() for c in cells))) for cells in lines[2:]]


PRESETS = _table("docs/ar.md", "presets")


@pytest.mark.parametrize("row", PRESETS, ids=[f"{r['config']}:{r['preset']}" for r in PRESETS])
def test_ar_md_table7_rows_match_the_configs(row):
    p = find_preset(load_config(row["config"])["sampling"], row["preset"])
    assert p["guidance"] == row["guidance"] and p["temperature"] == float(row["temperature"])
    if p["guidance"] == "none":
        assert row["paper CFG"] == "cfg=0" and row["s"] == row["p"] == ""
        return
    assert (p["scale"], p["power"]) == (float(row["s"]), float(row["p"]))
    assert p.get("ramp_over", "position") == "position" and p.get("cfg_start", 0.0) == 0.0
    paper = re.fullmatch(r"cosine, scale=([\d.]+), p=([\d.]+)", row["paper CFG"])
    assert float(paper.group(1)) - 1 == p["scale"] and float(paper.group(2)) == p["power"]  # s = S - 1


def test_ar_md_table7_lists_every_table7_preset_of_those_configs():
    listed = {(r["config"], r["preset"]) for r in PRESETS}
    for config in {r["config"] for r in PRESETS}:
        cfg = load_config(config)
        names = {p["name"] for s in cfg["schedules"] for p in presets_for(cfg["sampling"], s["name"])
                 if p["name"].startswith("t7-") or p["name"] == "nocfg"}
        assert names == {n for c, n in listed if c == config}, config
