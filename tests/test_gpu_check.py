"""benchmarks/gpu_check.sh runs end to end on the CPU with --tiny and prints every figure."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_tiny_prints_every_figure():
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        ["benchmarks/gpu_check.sh", "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    for figure in (
        "images/s, ",
        "decode: device",
        "tokens/s",
        "MFU",
        "eager",
        "compiled",
        "views/s",
        "FID (torch-fidelity",
    ):
        assert figure in out, figure
    assert out.strip().splitlines()[-1] == "gpu check done"
