"""The paper's tables (`vcq.report.tables`) and figures (`vcq.report.figures`), and the config
helpers both share."""

from __future__ import annotations

from pathlib import Path

from vcq.io import read_json

MISSING_NOTE = "empty cell: input file not produced (step not run)"


def with_data_manifest(cfg: dict, manifest: str | Path | None) -> tuple[dict, list[str] | None]:
    """(cfg with `report.n_images` filled from the data manifest's train count where it is null,
    the class names in label order); the manifest may be absent when n_images is set.

    Labels everywhere are ImageFolderDataset's: the index of the class folder in sorted order.
    """
    data = read_json(manifest, "make_dataset") if manifest and Path(manifest).exists() else None
    if cfg["report"]["n_images"] is None:
        if data is None:
            raise ValueError(
                f"report.n_images is not set and the data manifest {manifest} does not exist "
                "(run make_dataset first, or set report.n_images)"
            )
        cfg = {**cfg, "report": {**cfg["report"], "n_images": int(data["counts"]["train"])}}
    return cfg, sorted(data["classes"]) if data and "classes" in data else None


def merge_schedules(cfgs: list[dict]) -> dict:
    """One config holding the schedules of several (same L and image size), for reference tables."""
    merged = {
        **cfgs[0],
        "experiment": " + ".join(dict.fromkeys(c["experiment"] for c in cfgs)),
        "schedules": [s for c in cfgs for s in c["schedules"]],
    }
    for c in cfgs[1:]:
        if c["tokenizer"]["num_tokens"] != merged["tokenizer"]["num_tokens"] or cfg_image_size(
            c
        ) != cfg_image_size(merged):
            raise ValueError("reference configs must share tokenizer.num_tokens and image size")
    return merged


def schedule_names(cfg: dict) -> list[str]:
    """Names of the experiment's schedules, in config order."""
    return [s["name"] for s in cfg["schedules"]]


def cfg_image_size(cfg: dict) -> int:
    """Image side length used for BPP: the tokenizer's input resolution."""
    return int(cfg["tokenizer"]["model"]["image_size"])
