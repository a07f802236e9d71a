"""The README's demo claims checker (vcq.report.claims) on crafted metric records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vcq.config import load_config
from vcq.metrics.records import (
    EntropySummary,
    GenerationMetrics,
    ReconstructionMetrics,
    write_record,
)
from vcq.paths import Layout
from vcq.report import claims
from vcq.sampling import find_preset, sampled_pairs

CONFIG = ".test/config/config.yaml"


def _write_run(results: Path, psnr: float, accuracy: float) -> list[str]:
    """Records of every schedule and preset of the CI config under `results`: PSNR `psnr` against
    a 14 dB baseline, the samples of the last pair recognised `accuracy` of the time (the others
    90 %); the `--set` arguments that point the checker at them."""
    overrides = [f"paths.results_dir={results}"]
    cfg = load_config(CONFIG, overrides)
    layout = Layout.of(cfg)
    for s in cfg["schedules"]:
        name = s["name"]
        write_record(layout.recon(name), ReconstructionMetrics(name, psnr, 14.0, None, None, 1.0))
        write_record(layout.entropy(name), EntropySummary(name, 16, 16, 16, 4.0, 0.3, 3, 2, 9.0))
    pairs = sampled_pairs(cfg)
    for i, (schedule, preset) in enumerate(pairs):
        acc = accuracy if i == len(pairs) - 1 else 0.9
        record = GenerationMetrics(
            schedule, find_preset(cfg["sampling"], preset), 2.0, "FD (demo features)",
            1.0, 0.0, 1, None, None, None, 6, acc, 1.0,
        )  # fmt: skip
        write_record(layout.gen(schedule, preset), record)
    return [a for o in overrides for a in ("--set", o)]


def test_claims_hold(tmp_path, capsys):
    args = _write_run(tmp_path, psnr=20.5, accuracy=0.6)
    assert claims.main(["--config", CONFIG, *args]) == 0
    out, err = capsys.readouterr()
    assert "psnr constant: 20.50 dB, baseline 14.00 dB, +6.50 dB" in out
    assert "class accuracy cosine cbcfg (cfg): 60.0%" in out
    assert "t* cosine: measured 3, theory 2" in out
    assert "cpu: unknown (no environment.json)" in out
    assert err == ""


@pytest.mark.parametrize(
    ("psnr", "accuracy", "failing"),
    [(19.9, 0.9, ["constant: PSNR 19.90", "cosine: PSNR 19.90"]), (21.0, 0.59, ["cosine cbcfg"])],
)
def test_claims_fail(tmp_path, capsys, psnr, accuracy, failing):
    args = _write_run(tmp_path, psnr=psnr, accuracy=accuracy)
    assert claims.main(["--config", CONFIG, *args]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(failing)
    for line, what in zip(lines, failing, strict=True):
        assert line.startswith(f"error: claim does not hold: {what}")


def test_missing_record_is_one_error_line(tmp_path, capsys):
    args = _write_run(tmp_path, psnr=21.0, accuracy=0.9)
    cfg = load_config(CONFIG, [f"paths.results_dir={tmp_path}"])
    Path(Layout.of(cfg).recon("cosine")).unlink()
    assert claims.main(["--config", CONFIG, *args]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "cosine.json" in line


def test_readme_states_the_checked_thresholds():
    readme = Path("README.md").read_text()
    assert re.search(rf"≥ {claims.MIN_PSNR_GAIN_DB:g} dB above", readme)
    assert re.search(rf"≥ {claims.MIN_CLASS_ACCURACY:.0%}".replace("%", " %"), readme)
