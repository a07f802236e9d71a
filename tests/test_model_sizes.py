"""The model-size step prints Table 3's comparison for the paper configs."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_base_config_sizes_match_table3_within_tolerance():
    out = subprocess.run(
        [sys.executable, "pipeline_steps/model_sizes.py", "--config", "config/imagenet/base.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    assert "tokenizer tokenizer_base (Kmax 16384, L 256): 172.42M (paper 172M, +0.2%)" in out
    assert "AR ar_b (Kmax 16384, L 256): 110.89M (paper 115M, -3.6%)" in out
