"""Generate the synthetic data set, or validate an image folder; write its manifest (JSON)."""

from __future__ import annotations

from pathlib import Path

from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.data.images import ImageFolderDataset
from vcq.data.synthetic import folder_hash, generate
from vcq.io import StepError, write_json


def validate_folder(root: Path) -> dict:
    """Manifest of an existing `root/{train,val}` ImageFolder; every image is decoded once."""
    manifest: dict = {"source": "folder", "root": str(root), "counts": {}, "skipped": {}}
    for split in ("train", "val"):
        try:
            data = ImageFolderDataset(root / split)
        except FileNotFoundError as e:
            raise StepError(f"data.root: {e}") from e
        skipped = data.scan()
        manifest["counts"][split] = len(data) - len(skipped)
        manifest["skipped"][split] = skipped
        if not manifest["counts"][split]:
            raise StepError(f"data.root: no readable image under {root / split}")
        manifest.setdefault("classes", data.classes)
        if data.classes != manifest["classes"]:
            raise StepError(f"data.root: {root}: train and val have different class folders")
    manifest["num_classes"] = len(manifest["classes"])
    # Sizes, not bytes: hashing a full ImageNet copy would take longer than validating it.
    manifest["listing_sha256"] = folder_hash(root, by="sizes")
    return manifest


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="manifest path (default <data.root>/manifest.json; synthetic data only there)",
    )
    args = parser.parse_args()
    cfg = load_step_config(args)
    log = setup_logging()
    data = cfg["data"]
    root = Path(data["root"])
    out = args.out or root / "manifest.json"
    if data["source"] == "synthetic":
        if out != root / "manifest.json":
            raise StepError(f"--out {out}: the synthetic generator writes {root / 'manifest.json'}")
        manifest = generate(
            root,
            data["num_classes"],
            data["train_per_class"],
            data["val_per_class"],
            data["image_size"],
            data["seed"],
        )
    else:
        out.unlink(missing_ok=True)
        manifest = validate_folder(root)
        write_json(out, manifest)
    for split in ("train", "val"):
        log.info(
            "%s: %d images, %d classes, %d corrupt images skipped",
            split,
            manifest["counts"][split],
            manifest["num_classes"],
            len(manifest["skipped"][split]),
        )
    log.info("wrote %s", out)


if __name__ == "__main__":
    run_step(main)
