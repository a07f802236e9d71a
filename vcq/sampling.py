"""Batched KV-cached generation with classifier-free guidance schedules over positions."""

from __future__ import annotations

import math

import numpy as np
import torch

from vcq.ar import ARModel
from vcq.config import ConfigError

GUIDANCE = ("none", "constant", "power-cosine", "codebook-aware")
# How the power-cosine ramp combines with the Eq. 4 weight w_t (the paper does not say; docs/ar.md).
RAMP_OVER = ("position", "capacity")


def power_cosine(x: np.ndarray, power: float) -> np.ndarray:
    """(1 - cos(pi * x^p)) / 2: 0 at x = 0, 1 at x = 1."""
    return (1.0 - np.cos(math.pi * np.asarray(x, dtype=np.float64) ** power)) / 2.0


def power_cosine_ramp(length: int, power: float) -> np.ndarray:
    """r_t = (1 - cos(pi * (t/L)^p)) / 2 for t = 0..L-1: rises from 0 to ~1 over the sequence."""
    return power_cosine(np.arange(length) / length, power)


def codebook_weight(k_sizes: np.ndarray) -> np.ndarray:
    """Eq. 4 weight (log2 K_t - log2 Kmin)/(log2 Kmax - log2 Kmin); ones for a constant codebook."""
    lk = np.log2(np.asarray(k_sizes, dtype=np.float64))
    span = lk.max() - lk.min()
    return np.ones_like(lk) if span == 0 else (lk - lk.min()) / span


def guidance_scales(
    guidance: str,
    scale: float,
    k_sizes: np.ndarray,
    power: float | None = None,
    ramp_over: str = "position",
    cfg_start: float = 0.0,
) -> np.ndarray:
    """Per-position guidance s_t = cfg_start + (scale - cfg_start)·g_t (length L).

    g_t is 1 (constant), r(t/L) (power-cosine) or, for codebook-aware, the Eq. 4 weight w_t
    alone (`power` None), w_t·r(t/L) (`ramp_over` position) or r(w_t) (`ramp_over` capacity),
    with r(x) = (1 - cos(pi·x^p))/2. `cfg_start` is s_t where g_t = 0 (Eq. 4: 0).
    """
    n = len(k_sizes)
    if guidance == "none":
        return np.zeros(n)
    if ramp_over not in RAMP_OVER:
        raise ValueError(f"unknown ramp_over {ramp_over!r}; expected one of {RAMP_OVER}")
    if guidance == "constant":
        shape = np.ones(n)
    elif guidance == "power-cosine":
        shape = power_cosine_ramp(n, 1.0 if power is None else power)
    elif guidance == "codebook-aware":
        w = codebook_weight(k_sizes)
        if power is None:
            shape = w
        elif ramp_over == "position":
            shape = w * power_cosine_ramp(n, power)
        else:
            shape = power_cosine(w, power)
    else:
        raise ValueError(f"unknown guidance {guidance!r}; expected one of {GUIDANCE}")
    return cfg_start + (scale - cfg_start) * shape


# Table 8/9 columns: codebook-aware is the default (product) reading, the others are named.
STRATEGIES = (
    "constant",
    "power-cosine",
    "codebook-aware",
    "codebook-aware/capacity",
    "codebook-aware/eq4",
)


def guidance_strategy(preset: dict) -> str:
    """Table 8/9 column of a preset: its guidance; codebook-aware split by reading (STRATEGIES)."""
    g = preset.get("guidance", "none")
    if g != "codebook-aware":
        return g
    if preset.get("power") is None:
        return "codebook-aware/eq4"
    return "codebook-aware/capacity" if preset.get("ramp_over") == "capacity" else "codebook-aware"


def cfg_logits(cond: torch.Tensor, uncond: torch.Tensor, s: float) -> torch.Tensor:
    """(1 + s)·cond − s·uncond."""
    return (1.0 + s) * cond - s * uncond


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Mask logits outside the top-k and outside the smallest set with mass >= top_p."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        srt, idx = torch.sort(logits, dim=-1, descending=True)
        cum = srt.softmax(-1).cumsum(-1)
        remove = cum - srt.softmax(-1) >= top_p  # keep the token that crosses the threshold
        logits = logits.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    return logits


@torch.no_grad()
def generate(
    model: ARModel,
    labels: torch.Tensor,
    k_sizes: np.ndarray,
    preset: dict,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample (B, L) token indices; cond and uncond passes share one 2B batch when guided.

    With a prologue (`model.prologue`) its P tokens are sampled first, restricted to its Kp codes,
    guided with `prologue_scale` (default: the base scale) and fed back through its codebook; only
    the L visual tokens are returned.
    """
    model.eval()
    prologue = model.prologue
    scales = guidance_scales(
        preset["guidance"],
        preset.get("scale", 0.0),
        k_sizes,
        preset.get("power"),
        preset.get("ramp_over", "position"),
        preset.get("cfg_start", 0.0),
    )
    n_pro = prologue.num_tokens if prologue is not None else 0
    if n_pro:
        # the prologue is a global summary: one scale for all of it (default: the preset's base
        # scale)
        base = preset.get("prologue_scale")
        base = preset.get("scale", 0.0) if base is None else base
        base = base if preset["guidance"] != "none" else 0.0
        scales = np.concatenate([np.full(n_pro, base), scales])
        k_sizes = np.concatenate([np.full(n_pro, prologue.codebook_size), k_sizes])
    b, L = labels.shape[0], len(k_sizes)
    guided = preset["guidance"] != "none"
    temp, top_k, top_p = (
        preset.get("temperature", 1.0),
        preset.get("top_k", 0),
        preset.get("top_p", 1.0),
    )
    restrict = preset.get("restrict_to_kt", True)
    lab = torch.cat([labels, torch.full_like(labels, model.null_class)]) if guided else labels
    cache = model.new_cache(lab.shape[0], extra=n_pro)
    logits = model.vocab_logits(model.forward_embeds(model.embed(lab, None), cache)[:, -1])
    out = torch.empty(b, L, dtype=torch.long, device=labels.device)
    for t in range(L):
        if guided:
            logits = cfg_logits(logits[:b], logits[b:], float(scales[t]))
        if restrict or t < n_pro:  # prologue ids beyond Kp have no code to feed back
            logits[:, int(k_sizes[t]) :] = float("-inf")
        logits = filter_logits(logits / max(temp, 1e-8), top_k, top_p)
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)
        out[:, t] = nxt[:, 0]
        if t + 1 < L:
            step = torch.cat([nxt, nxt]) if guided else nxt
            x = prologue.embed_ids(step) if t < n_pro else model.embed(None, step)
            logits = model.vocab_logits(model.forward_embeds(x, cache)[:, -1])
    return out[:, n_pro:]


def sample_labels(num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """`per_class` labels of each class in a seeded random order (the sample file's order).

    ADM's evaluator computes IS over contiguous splits of 5,000 images: class-major files would
    put one or two classes in each split and understate IS several-fold (LlamaGen samples random
    labels for the same reason).
    """
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels)


def expand_presets(sampling_cfg: dict) -> list[dict]:
    """Listed presets plus one `{grid}-s{scale}-p{power}` per grid point (no -p for null power)."""
    presets = [dict(p) for p in sampling_cfg.get("presets", [])]
    for grid in sampling_cfg.get("grids", []):
        for s in grid["scales"]:
            for p in grid["powers"]:
                # a null power (codebook-aware: Eq. 4 alone) has no -p part in the name
                name = f"{grid['name']}-s{s:g}" + ("" if p is None else f"-p{p:g}")
                presets.append(
                    {
                        "name": name,
                        "guidance": grid["guidance"],
                        "scale": s,
                        "power": p,
                        "temperature": grid.get("temperature", 1.0),
                        "ramp_over": grid.get("ramp_over", "position"),
                        "cfg_start": grid.get("cfg_start", 0.0),
                        "top_k": 0,
                        "top_p": 1.0,
                        "restrict_to_kt": True,
                        "schedules": list(grid.get("schedules", [])),
                    }
                )
    names = [p["name"] for p in presets]
    if len(set(names)) != len(names):
        raise ValueError(
            f"duplicate preset names: {sorted(n for n in set(names) if names.count(n) > 1)}"
        )
    return presets


def _applies(preset: dict, schedule: str) -> bool:
    """Whether an expanded preset samples `schedule` (an empty `schedules` list means all)."""
    return not preset.get("schedules") or schedule in preset["schedules"]


def presets_for(sampling_cfg: dict, schedule: str) -> list[dict]:
    """The expanded presets that apply to `schedule`."""
    return [p for p in expand_presets(sampling_cfg) if _applies(p, schedule)]


def run_settings(sampling_cfg: dict) -> dict:
    """The sampling settings every preset shares (the section without `presets` and `grids`)."""
    return {k: v for k, v in sampling_cfg.items() if k not in ("presets", "grids")}


def sampled_pairs(cfg: dict) -> list[tuple[str, str]]:
    """The (schedule, preset name) pairs an experiment samples and evaluates, in config order."""
    presets = expand_presets(cfg["sampling"])
    return [
        (s["name"], p["name"]) for s in cfg["schedules"] for p in presets if _applies(p, s["name"])
    ]


def find_preset(sampling_cfg: dict, name: str) -> dict:
    """The expanded preset called `name`."""
    for p in expand_presets(sampling_cfg):
        if p["name"] == name:
            return p
    raise ConfigError(
        f"no sampling preset {name!r}; have {[p['name'] for p in expand_presets(sampling_cfg)]}"
    )
