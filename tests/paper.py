"""The paper's printed numbers for tests, read from their one place, config/paper_numbers.yaml
(tests import this module; they never restate a printed digit)."""

import re
from pathlib import Path

import yaml

PAPER = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "config/paper_numbers.yaml").read_text()
)

# N of ImageNet-1K's training set (Table 1), the N of Table 2's t* and of Fig. 2
IMAGENET_N = next(d["n"] for d in PAPER["table1"]["datasets"] if d["name"] == "ImageNet-1K")


def table2_schedules(*names: str) -> list[dict]:
    """The schedules of Table 2's rows (all, or those named), as config entries: each row is named
    by its kind (constant16384, cosine_large, ...) and Power is the paper's alpha = 2.5."""
    rows = PAPER["table2"]
    return [
        {
            "name": name,
            "kind": re.match(r"[a-z]+", name).group(0),
            "k_min": rows[name]["k_min"],
            "k_max": rows[name]["k_max"],
            "alpha": 2.5,
        }
        for name in names or rows
    ]
