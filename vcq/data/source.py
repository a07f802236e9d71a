"""What identifies a data set: where its images are and the key of its source, which names the
manifest that every experiment reading the same source shares.

An image folder is keyed by its root and the listing of its files with their sizes and
modification times (a file added, removed or changed gives another key); the synthetic set by
its generator parameters, and it lives in a folder of its own under `data.root` named by them, so
two parameter sets never write into one folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vcq.io import content_key

SPLITS = ("train", "val")
# Bump when the synthetic images for the same parameters change: the set goes to a new folder.
GENERATOR_VERSION = 1


def is_hidden(name: str) -> bool:
    """A dot entry (`.ipynb_checkpoints`, `.DS_Store`): never a class, an image or part of a key."""
    return name.startswith(".")


def synthetic_folder(data: dict) -> str:
    """The folder name of a synthetic set: its parameters, readable and distinct per set."""
    return (
        f"c{data['num_classes']}-train{data['train_per_class']}-val{data['val_per_class']}"
        f"-{data['image_size']}px-seed{data['seed']}-v{GENERATOR_VERSION}"
    )


def images_root(data: dict) -> Path:
    """The folder holding `train/<class>/` and `val/<class>/` of the config's `data` section."""
    root = Path(data["root"])
    return root / synthetic_folder(data) if data["source"] == "synthetic" else root


def folder_listing(root: str | os.PathLike) -> str:
    """SHA-256 over every file under `root/{train,val}` (hidden entries skipped): relative path,
    size and modification time. Stats only: hashing ImageNet's bytes would take hours."""
    root = Path(root)
    h = hashlib.sha256()

    def walk(folder: Path) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            h.update(f"missing {folder.relative_to(root)}\n".encode())
            return
        for e in entries:
            if is_hidden(e.name):
                continue
            if e.is_dir():
                walk(Path(e.path))
            elif e.is_file():
                st = e.stat()
                rel = Path(e.path).relative_to(root)
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())

    for split in SPLITS:
        walk(root / split)
    return h.hexdigest()


def source_key(data: dict) -> str:
    """Hex key of the data source: root and listing (folder) or generator parameters
    (synthetic); independent of the experiment and of how the images are augmented."""
    root = os.path.normpath(data["root"])
    if data["source"] == "synthetic":
        return content_key(source="synthetic", root=root, folder=synthetic_folder(data))
    return content_key(source="folder", root=root, listing=folder_listing(root))


def manifest_name(data: dict, key: str) -> str:
    """File name of a source's shared manifest: the root made readable, then the key, so that
    `data/a_b` and `data/a/b` (or a changed listing) never share a name."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", os.path.normpath(data["root"]).strip("/")) or "root"
    return f"{slug}-{key[:16]}.json"


@contextmanager
def preparing(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (the data set's root, which exists) while its data set or
    manifest is prepared: two experiments started together on one source prepare it once, the
    second waiting for the first. flock: Linux's NFS client carries it between nodes, the kernel
    drops it if its holder dies, and a read-only folder can be locked; no lock file is written.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
