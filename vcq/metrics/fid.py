"""FID, IS, precision/recall and KID on torch-fidelity feature extractors, ADM reference batches."""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric
from tqdm import tqdm

from vcq.data.images import center_crop_arr, load_rgb
from vcq.data.source import is_hidden
from vcq.data.synthetic import folder_hash
from vcq.io import StepError, atomic_path, content_key, file_sha256, npz_memmap

log = logging.getLogger(__name__)

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class ImageSource(Dataset):
    """Images of a sample `.npz`/`.npy` (uint8 NHWC, memory-mapped) or an image folder, as uint8
    CHW.

    A folder's images may have any size: with `size` set, each is brought to size × size by
    `center_crop_arr` (as ADM's reference batch was), so photos compare with samples.
    """

    def __init__(self, path: str | Path, limit: int | None = None, size: int | None = None):
        self.path, self.size = Path(path), size
        if self.path.is_dir():
            self.files = sorted(
                p
                for p in self.path.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES
                and not any(is_hidden(part) for part in p.relative_to(self.path).parts)
            )
            self.array = None
            n = len(self.files)
        elif self.path.suffix == ".npy":
            self.array = np.load(self.path, mmap_mode="r")
            n = len(self.array)
        else:
            self.array = npz_memmap(self.path)
            n = len(self.array)
        self.n = n if limit is None else min(n, limit)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.array is not None:
            img = np.asarray(self.array[i])
        else:
            # as every other reader sees an image: depth scaled to 8 bits, upright, opaque
            img = load_rgb(self.files[i], max_pixels=None)
            img = center_crop_arr(img, self.size) if self.size else np.asarray(img)
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def feature_weights(cfg: dict) -> Path:
    """The weight file of the configured feature extractor; a missing one is one line naming its
    key (the evaluation steps check it before they compute anything)."""
    eval_cfg = cfg["eval"]
    if eval_cfg["feature_extractor"] == "demo":
        key, remedy = "eval.demo_weights", "the `train_feature_net` rule writes it"
    else:
        key = "eval.inception_weights"
        remedy = f"download {INCEPTION_URL} on a machine with internet access and put it there"
    path = Path(eval_cfg[key.split(".")[1]])
    if not path.is_file():
        raise StepError(f"{path}: feature extractor weights not found ({key}); {remedy}")
    return path


def build_extractor(cfg: dict) -> tuple[torch.nn.Module, str]:
    """The configured feature extractor and its `fd_label` ("FID" or "FD (demo features)")."""
    weights = feature_weights(cfg)
    if cfg["eval"]["feature_extractor"] == "demo":
        from vcq.metrics.features import load_demo_extractor

        return load_demo_extractor(weights), "FD (demo features)"
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3(
        "inception-v3-compat",
        ["2048", "logits_unbiased"],
        feature_extractor_weights_path=str(weights),
    )
    return net, "FID"


@torch.no_grad()
def extract_features(
    net: torch.nn.Module, source: Dataset, batch_size: int, desc: str = ""
) -> dict:
    """Run `net` over `source` in batches; returns {"pool": (N,D) float64, "logits": (N,C)
    float64}."""
    device = next(net.parameters()).device
    loader = DataLoader(source, batch_size=batch_size, shuffle=False, num_workers=0)
    pools, logits = [], []
    for x in tqdm(loader, desc=desc or "features", unit="batch"):
        pool, logit = net(x.to(device))
        pools.append(pool.double().cpu())
        logits.append(logit.double().cpu())
    return {"pool": torch.cat(pools), "logits": torch.cat(logits)}


def _stats(pool: torch.Tensor) -> dict:
    """Mean and covariance of features, as torch-fidelity computes them."""
    x = pool.numpy()
    return {"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)}


def _cache_file(ref: Path, cfg: dict, extractor: str) -> Path:
    """Where the cached statistics of `ref` under `extractor` live (one file per reference)."""
    raw = f"{ref.resolve()}|{extractor}|{cfg['eval']['num_samples']}"
    return (
        Path(cfg["eval"]["cache_dir"]) / f"ref_{hashlib.sha256(raw.encode()).hexdigest()[:16]}.npz"
    )


def _content_key(ref: Path, cfg: dict, extractor: str) -> str:
    """Hash of what the cached statistics are a function of: the reference, feature weights, limit
    and the side folder images are brought to.

    A folder is keyed by its files' paths, sizes and modification times, not bytes: re-reading
    ImageNet val (6.4 GB) in every evaluation job would cost more than the evaluation, and any
    rewritten file still changes the key.
    """
    eval_cfg = cfg["eval"]
    weights = Path(
        eval_cfg["demo_weights"] if extractor == "demo" else eval_cfg["inception_weights"]
    )
    return content_key(
        reference=folder_hash(ref, by="stats") if ref.is_dir() else file_sha256(ref),
        weights=file_sha256(weights) if weights.is_file() else None,
        extractor=extractor,
        limit=eval_cfg["num_samples"],
        size=sample_size(cfg),
    )


def _read_cache(cache: Path, key: str) -> dict | None:
    """Cached reference statistics, or None when absent or made from other inputs (discarded)."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) != key:
                log.warning("discarding %s: the reference or the feature weights changed", cache)
                return None
            out = {k: z[k] for k in z.files if k != "key"}
    except (EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        # a cache is recomputable: a damaged one costs a recomputation, not the step
        log.warning("discarding %s: unreadable (%s)", cache, type(e).__name__)
        return None
    for k in ("pool", "logits"):
        if k in out:
            out[k] = torch.from_numpy(out[k])
    return out


def sample_size(cfg: dict) -> int | None:
    """Side of the generated images (the tokenizer input), to which folder references are scaled."""
    model = cfg.get("tokenizer", {}).get("model")
    return int(model["image_size"]) if isinstance(model, dict) and "image_size" in model else None


def reference_features(ref: str | Path, net: torch.nn.Module, cfg: dict, extractor: str) -> dict:
    """Features and FID statistics of a reference, computed once and cached in eval.cache_dir.

    The cache is keyed by the content hashes of the reference and of the feature weights. An ADM
    reference batch's own `mu`/`sigma` replace the statistics of our features (its images still
    give the features for precision/recall and KID).
    """
    ref = Path(ref)
    eval_cfg = cfg["eval"]
    cache, key = _cache_file(ref, cfg, extractor), _content_key(ref, cfg, extractor)
    cached = _read_cache(cache, key)
    if cached is not None:
        return cached
    src = (
        ImageSource(ref, eval_cfg["num_samples"], sample_size(cfg))
        if ref.is_dir() or ref.suffix == ".npy" or _has_images(ref)
        else None
    )
    out: dict = {}
    if src is not None:
        out = extract_features(net, src, eval_cfg["batch_size"], desc="reference")
        out.update(_stats(out["pool"]))
    if ref.suffix == ".npz":
        with np.load(ref) as z:
            if "mu" in z and extractor == "inception":
                out["mu"], out["sigma"] = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
    if "mu" not in out:
        raise ValueError(f"reference {ref} has neither images nor mu/sigma")
    arrays = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in out.items()}
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, key=np.array(key), **arrays)
    return out


def _has_images(path: Path) -> bool:
    """Whether an .npz carries `arr_0`."""
    with zipfile.ZipFile(path) as zf:
        return "arr_0.npy" in zf.namelist()


def inception_score(logits: torch.Tensor, split_size: int = 5000) -> tuple[float, float]:
    """(mean, std) over contiguous splits of `split_size` rows (the last may be shorter) of
    exp(E_x KL(p(y|x) || p(y))), p = softmax(logits): ADM's evaluator on the file's order.

    ADM reports the mean; the sample file's seeded random class order makes each split a
    random draw of classes (torch-fidelity's shuffled splits would hide a class-major file).
    """
    log_p = logits.double().log_softmax(dim=1)
    scores = []
    for part in log_p.split(split_size):
        log_q = part.exp().mean(0, keepdim=True).log()
        scores.append(float(((part.exp() * (part - log_q)).sum(1).mean()).exp()))
    return float(np.mean(scores)), float(np.std(scores))


def feature_metrics(pool: torch.Tensor, logits: torch.Tensor, ref: dict, eval_cfg: dict) -> dict:
    """FD (`fd`), IS, precision/recall and KID from the samples' feature matrices and the
    reference's (`mu`, `sigma`, and `pool` where its images are known): the arithmetic of ADM's
    evaluator (tests/test_adm_parity.py ports it)."""
    out = {
        "fd": fid_statistics_to_metric(
            _stats(pool), {"mu": ref["mu"], "sigma": ref["sigma"]}, False
        )["frechet_inception_distance"],
        "is_split_size": eval_cfg["is_split_size"],
    }
    out["is_mean"], out["is_std"] = inception_score(logits, eval_cfg["is_split_size"])
    out["precision"] = out["recall"] = out["kid_mean"] = None
    if "pool" in ref:
        prc = prc_features_to_metric(
            pool.float(),
            ref["pool"].float(),
            prc_neighborhood=eval_cfg["pr_neighborhood"],
            prc_batch_size=10000,
            save_cpu_ram=False,
            verbose=False,
        )
        out["precision"], out["recall"] = prc["precision"], prc["recall"]
        subset = min(eval_cfg["kid_subset_size"], len(pool), len(ref["pool"]))
        kid = kid_features_to_metric(
            pool,
            ref["pool"],
            kid_subsets=100,
            kid_subset_size=subset,
            verbose=False,
            kid_kernel="poly",
            kid_kernel_poly_degree=3,
            kid_kernel_poly_gamma=None,
            kid_kernel_poly_coef0=1,
            rng_seed=2020,
        )
        out["kid_mean"] = kid["kernel_inception_distance_mean"]
    return out


def evaluate(samples: str | Path, reference: str | Path, cfg: dict) -> dict:
    """FID/FD (`fd`), IS, precision/recall, KID of `samples` against `reference`: the fields of
    `vcq.metrics.records.GenerationMetrics` but the schedule and preset."""
    eval_cfg = cfg["eval"]
    net, label = build_extractor(cfg)
    ref = reference_features(reference, net, cfg, eval_cfg["feature_extractor"])
    src = ImageSource(samples, eval_cfg["num_samples"])
    feats = extract_features(net, src, eval_cfg["batch_size"], desc="samples")
    out = {
        **feature_metrics(feats["pool"], feats["logits"], ref, eval_cfg),
        "fd_label": label,
        "n_samples": len(src),
    }
    if eval_cfg["feature_extractor"] == "demo":
        # The demo net is a classifier of the data set's own classes: report how often it
        # recognises the class a sample was conditioned on, beside its accuracy on real images.
        out["class_accuracy"] = class_accuracy(
            feats["logits"], _sample_labels(Path(samples), len(src))
        )
        out["class_accuracy_reference"] = class_accuracy(
            ref.get("logits"), _folder_labels(Path(reference))
        )
    return out


def class_accuracy(logits: torch.Tensor | None, labels: np.ndarray | None) -> float | None:
    """Top-1 accuracy of `logits` against the first len(logits) `labels` (None if unknown)."""
    if logits is None or labels is None or len(labels) < len(logits):
        return None
    return float((logits.argmax(1).numpy() == labels[: len(logits)]).mean())


def _sample_labels(path: Path, n: int) -> np.ndarray | None:
    """Class labels stored beside `arr_0` in a sample .npz (the conditioning classes)."""
    if path.suffix != ".npz":
        return None
    with np.load(path) as z:
        return z["labels"][:n] if "labels" in z else None


def _folder_labels(path: Path) -> np.ndarray | None:
    """Labels of an image folder's files in ImageSource order: sorted class folder index."""
    if not path.is_dir():
        return None
    files = ImageSource(path).files
    classes = sorted({p.parent.name for p in files})
    return np.array([classes.index(p.parent.name) for p in files])


def rfid(recon_npz: str | Path, reference: str | Path, cfg: dict) -> tuple[float, str]:
    """Reconstruction FID of `recon_npz` against a folder or .npz reference: (value, fd_label)."""
    res = evaluate(recon_npz, reference, cfg)
    return res["fd"], res["fd_label"]
