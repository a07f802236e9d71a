"""Generate the synthetic data set, or validate an image folder; write <root>/manifest.json."""

from __future__ import annotations

from pathlib import Path

from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.data.images import ImageFolderDataset
from vcq.data.synthetic import folder_hash, generate
from vcq.io import write_json


def validate_folder(root: Path) -> dict:
    """Manifest of an existing `root/{train,val}` ImageFolder; every image is decoded once."""
    manifest: dict = {"source": "folder", "counts": {}, "skipped": {}}
    for split in ("train", "val"):
        data = ImageFolderDataset(root / split)
        skipped = data.scan()
        manifest["counts"][split] = len(data) - len(skipped)
        manifest["skipped"][split] = skipped
        manifest.setdefault("classes", data.classes)
        if data.classes != manifest["classes"]:
            raise SystemExit(f"{root}: train and val have different class folders")
    manifest["num_classes"] = len(manifest["classes"])
    # Sizes, not bytes: hashing a full ImageNet copy would take longer than validating it.
    manifest["listing_sha256"] = folder_hash(root, content=False)
    return manifest


def main() -> None:
    """CLI entry point."""
    args = step_parser(__doc__).parse_args()
    cfg = load_step_config(args)
    log = setup_logging()
    data = cfg["data"]
    root = Path(data["root"])
    if data["source"] == "synthetic":
        manifest = generate(root, data["num_classes"], data["train_per_class"],
                            data["val_per_class"], data["image_size"], data["seed"])
    else:
        (root / "manifest.json").unlink(missing_ok=True)
        manifest = validate_folder(root)
        write_json(root / "manifest.json", manifest)
    for split in ("train", "val"):
        log.info("%s: %d images, %d classes, %d corrupt images skipped", split,
                 manifest["counts"][split], manifest["num_classes"],
                 len(manifest["skipped"][split]))
    log.info("wrote %s", root / "manifest.json")


if __name__ == "__main__":
    run_step(main)
