"""Generate the synthetic data set, or validate an image folder; write its manifest (JSON).

The manifest is shared by every experiment on the same data source (`vcq.data.source`): a folder
is validated once per listing, a synthetic set generated once per parameter set; `--out` gets a
copy for the experiment that asked.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.data.images import ImageFolderDataset, check_unreadable
from vcq.data.source import folder_listing, images_root, manifest_name, preparing, source_key
from vcq.data.synthetic import generate_once
from vcq.io import StepError, read_json, write_json
from vcq.paths import Layout


def validate_folder(root: Path, max_unreadable: float, max_pixels: int | None) -> dict:
    """Manifest of an existing `root/{train,val}` ImageFolder; every image is decoded once, and
    more unreadable ones (or above `max_pixels`) than `max_unreadable` allows stop the step."""
    manifest: dict = {"source": "folder", "root": str(root), "counts": {}, "skipped": {}}
    for split in ("train", "val"):
        try:
            data = ImageFolderDataset(root / split, max_pixels=max_pixels)
        except FileNotFoundError as e:
            raise StepError(f"data.root: {e}") from e
        skipped = data.scan()
        check_unreadable(skipped, len(data), max_unreadable, str(root / split))
        manifest["counts"][split] = len(data) - len(skipped)
        manifest["skipped"][split] = skipped
        if not manifest["counts"][split]:
            raise StepError(f"data.root: no readable image under {root / split}")
        manifest.setdefault("classes", data.classes)
        if data.classes != manifest["classes"]:
            only_train = sorted(set(manifest["classes"]) - set(data.classes))
            only_val = sorted(set(data.classes) - set(manifest["classes"]))
            raise StepError(
                f"data.root: {root}: train and val have different class folders (only in train: "
                f"{', '.join(only_train) or '-'}; only in val: {', '.join(only_val) or '-'})"
            )
    manifest["num_classes"] = len(manifest["classes"])
    manifest["listing_sha256"] = folder_listing(root)
    return manifest


def folder_manifest(cfg: dict, key: str, log: logging.Logger) -> dict:
    """The folder's manifest under `work_dir/manifests/` (the folder may be read-only), validated
    only when no experiment has validated this listing yet."""
    shared = Path(Layout.of(cfg).shared_manifest(manifest_name(cfg["data"], key)))
    root = images_root(cfg["data"])
    # two experiments started together on one folder validate it once: the second waits (a
    # missing folder is reported by the validation)
    with preparing(root) if root.is_dir() else nullcontext():
        if shared.is_file():
            manifest = read_json(shared, "make_dataset")
            if manifest.get("source_key") == key:
                log.info(
                    "same folder listing as the shared manifest %s: not validated again", shared
                )
                return manifest
        checked = validate_folder(root, cfg["data"]["max_unreadable"], cfg["data"]["max_pixels"])
        manifest = {**checked, "source_key": key, "images_root": str(root)}
        write_json(shared, manifest)
    log.info("validated %s; wrote %s", cfg["data"]["root"], shared)
    return manifest


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write the manifest here (the workflow's per-experiment copy)",
    )
    args = parser.parse_args()
    cfg = load_step_config(args)
    log = setup_logging()
    data = cfg["data"]
    key = source_key(data)
    if data["source"] == "synthetic":
        manifest = {**generate_once(data), "source_key": key, "images_root": str(images_root(data))}
    else:
        manifest = folder_manifest(cfg, key, log)
    for split in ("train", "val"):
        log.info(
            "%s: %d images, %d classes, %d corrupt images skipped",
            split,
            manifest["counts"][split],
            manifest["num_classes"],
            len(manifest["skipped"][split]),
        )
    if args.out:
        write_json(args.out, manifest)
        log.info("wrote %s", args.out)


if __name__ == "__main__":
    run_step(main)
