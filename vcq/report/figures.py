"""The paper's figures (Fig. 2, samples as in Figs. 3–11) and the run's curves, from the config
and the runs' records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vcq import schedules
from vcq.metrics.records import ReconstructionMetrics
from vcq.plotting import image_grid, pyplot, save_figure
from vcq.report import schedule_names
from vcq.runfiles import Samples

# Fig. 2(a) draws a Power schedule from K_min = 16 "for clarity" (its caption), beside Constant.
FIG2A_POWER_K_MIN = 16
FIG2A_POSITIONS = 17  # positions drawn in (a) and (b): the cliff falls in the first few


def plot_schedules(
    cfg: dict,
    out_stem: str | Path,
    entropy: dict[str, pd.DataFrame] | None = None,
    language: dict | None = None,
) -> list[Path]:
    """Fig. 2: (a) as the paper draws it, the remaining budget log2 N − I(t) per schedule, a Power
    schedule from K_min = 16 and, with `language` ({budget_bits, t_star}, paper_numbers
    `fig2a_language`), the paper's language reference; (b) the per-position bound
    min(log2 K_t, log2 N − I(t)) (+ measured H: `entropy` maps a schedule to its
    `vcq.runfiles.read_entropy_csv` frame); (c) K_t."""
    plt = pyplot()
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    from vcq.config import k_sizes_for

    n, length = cfg["report"]["n_images"], cfg["tokenizer"]["num_tokens"]
    fig, (ax_p, ax_a, ax_b) = plt.subplots(1, 3, figsize=(17, 4.8), constrained_layout=True)
    fig.suptitle(
        f"{cfg.get('experiment', '')}: entropy budget and codebook size, "
        f"N = {n:,} images (log2 N = {np.log2(n):.1f} bits), L = {length} tokens"
    )
    t = np.arange(min(FIG2A_POSITIONS, length))
    measured = False
    for name in schedule_names(cfg):
        k_sizes = k_sizes_for(cfg, name)
        budget = np.maximum(schedules.remaining_budget(k_sizes, n)[:-1], 0.0)
        (line,) = ax_p.plot(t, budget[: len(t)], "o-", ms=3, label=name)
        ax_a.plot(
            np.minimum(np.log2(k_sizes), budget)[: len(t)],
            color=line.get_color(),
            label=f"{name} (theory)",
        )
        ent = (entropy or {}).get(name)
        if ent is not None:
            measured = True
            ax_a.plot(
                ent["t"][: len(t)],
                ent["cond_entropy_bits"][: len(t)],
                "--",
                color=line.get_color(),
                label=f"{name} (measured H)",
            )
        ax_b.plot(k_sizes, color=line.get_color(), label=name)
    k_max = max(int(s["k_max"]) for s in cfg["schedules"])
    if k_max > FIG2A_POWER_K_MIN:
        power = schedules.schedule_k_sizes("power", FIG2A_POWER_K_MIN, k_max, length, 2.5)
        budget = np.maximum(schedules.remaining_budget(power, n)[:-1], 0.0)
        label = f"power, K_min = {FIG2A_POWER_K_MIN} (α = 2.5; the paper's Fig. 2a)"
        ax_p.plot(t, budget[: len(t)], "s--", ms=3, color="black", label=label)
    if language:
        ax_p.plot(
            [0, language["t_star"]],
            [language["budget_bits"], 0],
            ":",
            color="grey",
            marker="D",
            ms=4,
            label=f"language (LAMBADA): ~{language['budget_bits']:g} bits, t* ≈ "
            f"{language['t_star']}\n(the paper's two numbers, not a measured curve)",
        )
    ax_p.set(
        xlabel="position t",
        ylabel="remaining entropy (bits)",
        title="(a) as the paper draws it: remaining budget max(0, log2 N − I(t)),\n"
        "I(t) = Σ log2 K_s over s < t, the bits the first t tokens can carry",
    )
    ax_a.axhline(0, color="grey", lw=0.8)
    ax_a.set(
        xlabel="position t",
        ylabel="bits",
        title="(b) per position: H(x_t | x_<t) ≤ min(log2 K_t, log2 N − I(t))"
        + ("\nsolid: this bound; dashed: measured on the train tokens" if measured else ""),
    )
    ax_b.set(xlabel="position t", ylabel="codebook size $K_t$", title="(c) schedules")
    # powers of two as plain numbers (2, 64, 16384), the units codebook sizes come in
    ax_b.set_yscale("log", base=2)
    ax_b.yaxis.set_major_locator(LogLocator(base=2, numticks=8))
    ax_b.yaxis.set_major_formatter(ScalarFormatter())
    ax_b.yaxis.set_minor_formatter(NullFormatter())
    for ax in (ax_p, ax_a, ax_b):
        ax.legend(fontsize=7)
        ax.title.set_fontsize(9.5)
    return _save(fig, out_stem)


def plot_lines(
    series: dict[str, pd.DataFrame],
    x: str,
    ys: list[str],
    out_stem: str | Path,
    xlabel: str,
    ylabel: str,
    log_y: bool = False,
    title: str = "",
    labels: dict[str, str] | None = None,
) -> list[Path]:
    """One line per (series, column), e.g. the per-position AR loss of each schedule: one colour
    per series, one line style per column (`labels` renames columns in the legend)."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for i, (name, df) in enumerate(series.items()):
        for y, style in zip(ys, ("-", "--", ":", "-."), strict=False):
            if y in df:
                rows = df[[x, y]].dropna()
                label = f"{name} {(labels or {}).get(y, y)}"
                ax.plot(rows[x], rows[y], style, color=f"C{i % 10}", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, yscale="log" if log_y else "linear", title=title)
    ax.legend(fontsize=8)
    return _save(fig, out_stem)


def plot_panels(
    frames: dict[str, pd.DataFrame], panels: list[dict], out_stem: str | Path, title: str
) -> list[Path]:
    """Training curves, one panel per loss term, each with its own caption below the axes.

    A panel is {"keys": [column, ...], "ylabel", "caption"} (optionally "styles": one matplotlib
    style per key); the x axis is `step`. Panels whose keys no file has are left out; the y axis
    is logarithmic where the plotted values span more than a factor of 20.
    """
    plt = pyplot()

    panels = [pl for pl in panels if any(k in df for df in frames.values() for k in pl["keys"])]
    if not panels:
        raise ValueError(f"no curves to plot for {list(frames)}")
    fig, axes = plt.subplots(
        1, len(panels), figsize=(max(7.0, 4.8 * len(panels)), 4.0), squeeze=False
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes[0], panels, strict=True):
        values = []
        for i, (name, df) in enumerate(frames.items()):
            for key, style in zip(
                panel["keys"], panel.get("styles", ["-"] * len(panel["keys"])), strict=False
            ):
                if key in df:
                    rows = df[["step", key]].dropna()
                    if len(rows):
                        suffix = f" {key}" if len(panel["keys"]) > 1 else ""
                        ax.plot(
                            rows["step"],
                            rows[key],
                            style,
                            color=colours[i % len(colours)],
                            label=f"{name}{suffix}",
                            ms=3,
                        )
                        values.append(rows[key].to_numpy(float))
        v = np.concatenate(values)
        v = v[v > 0]
        if len(v) and v.max() / v.min() > 20:
            ax.set_yscale("log")
        ax.set(xlabel="step", ylabel=panel["ylabel"])
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax.text(
            0, -0.2, panel["caption"], transform=ax.transAxes, va="top", ha="left", fontsize=7.5
        )
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_stem, tight=True)


def plot_usage(
    recon: dict[str, ReconstructionMetrics], out_stem: str | Path, title: str = ""
) -> list[Path]:
    """Codebook usage per position from the eval_recon records of each schedule: (a) codes used
    vs K_t, (b) used / K_t."""
    plt = pyplot()

    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, record in recon.items():
        usage = pd.DataFrame(record.usage_per_position)
        (line,) = ax_a.plot(usage["t"], usage["used"], label=f"{name} used")
        ax_a.plot(usage["t"], usage["k_t"], ":", color=line.get_color(), label=f"{name} $K_t$")
        ax_b.plot(usage["t"], usage["utilization"], label=name)
    ax_a.set(
        xlabel="position t",
        ylabel="codes",
        yscale="log",
        title="(a) codes used on val vs available",
    )
    ax_b.set(
        xlabel="position t", ylabel="used / $K_t$", ylim=(0, 1.05), title="(b) codebook utilisation"
    )
    fig.suptitle(title)
    for ax in (ax_a, ax_b):
        ax.legend(fontsize=7)
    return _save(fig, out_stem)


def sample_grid(
    samples: Samples,
    out_png: str | Path,
    per_row: int = 8,
    rows: int = 10,
    class_names: list[str] | None = None,
    title: str = "",
) -> Path:
    """The per-class view: a PNG grid of the first `per_row` samples of each class (first `rows`
    classes), one row per class labelled with its name, under `title`."""
    images, labels = samples.images, samples.labels
    if labels is None:
        picks = [np.arange(min(len(images), per_row * rows))]
        row_names = [""] * (-(-len(picks[0]) // per_row))
    else:
        classes = np.unique(labels)[:rows]
        picks = [np.nonzero(labels == c)[0][:per_row] for c in classes]
        row_names = [_class_name(c, class_names) for c in classes]
    # one grid row per class (a class with fewer samples leaves white cells)
    grid = np.concatenate([image_grid(images[idx], per_row, fill=255) for idx in picks])
    h = images.shape[1]
    return _image_figure(
        grid, out_png, title, [(r + 0.5) * h for r in range(len(row_names))], row_names
    )


def sample_mosaic(
    samples: Samples,
    out_png: str | Path,
    n: int = 32,
    per_row: int = 8,
    seed: int = 0,
    class_names: list[str] | None = None,
    title: str = "",
) -> Path:
    """As the paper's uncurated Figs. 3–11: one sample each of `n` distinct classes drawn at random
    (`seed`; all classes when there are fewer), `per_row` to a row, each named below its image."""
    images, labels = samples.images, samples.labels
    if labels is None:
        picks, names = np.arange(min(n, len(images))), None
    else:
        picks = mosaic_picks(labels, n, seed)
        names = [_class_name(labels[i], class_names) for i in picks]
    plt = pyplot()
    cols = min(per_row, len(picks))
    rows = -(-len(picks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.6 * rows + 0.6), squeeze=False)
    smooth = "nearest" if images.shape[1] < 64 else "antialiased"
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(picks):
            ax.imshow(images[picks[i]], interpolation=smooth)
            if names:
                ax.set_title(names[i], fontsize=7, y=-0.14)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, [out_png], dpi=120, tight=True)[0]


def mosaic_picks(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of the first sample of each of `n` distinct classes drawn at random (`seed`)."""
    classes = np.random.default_rng(seed).permutation(np.unique(labels))[:n]
    return np.array([np.flatnonzero(labels == c)[0] for c in classes])


def _class_name(c: int, class_names: list[str] | None) -> str:
    return class_names[c] if class_names and c < len(class_names) else f"class {c}"


def plot_reconstructions(
    originals: np.ndarray,
    recons: dict[str, np.ndarray],
    labels: np.ndarray,
    out_png: str | Path,
    class_names: list[str] | None = None,
    title: str = "",
    per_class: int = 1,
    max_classes: int = 10,
    row_notes: dict[str, str] | None = None,
) -> Path:
    """Originals (top row) above each tokenizer's reconstructions of the same val images, for
    `per_class` images of each of the first `max_classes` classes (column labels: class names)."""
    classes = np.unique(labels)[:max_classes]
    picks = np.concatenate([np.nonzero(labels == c)[0][:per_class] for c in classes])
    strips = [originals[picks]] + [r[picks] for r in recons.values()]
    h, w = originals.shape[1:3]
    grid = image_grid(np.concatenate(strips), ncol=len(picks))
    names = ["original"] + [f"{n} {(row_notes or {}).get(n, '')}".strip() for n in recons]
    columns = [_class_name(labels[j], class_names) for j in picks]
    return _image_figure(
        grid,
        out_png,
        title,
        [(r + 0.5) * h for r in range(len(strips))],
        names,
        [(c + 0.5) * w for c in range(len(picks))],
        columns,
    )


def _image_figure(
    grid: np.ndarray,
    out_png: str | Path,
    title: str,
    row_ticks: list[float],
    row_names: list[str],
    col_ticks: list[float] | None = None,
    col_names: list[str] | None = None,
) -> Path:
    """An image grid shown pixel-exact (nearest) with labelled rows/columns and a title, as PNG."""
    plt = pyplot()
    scale = max(1.0, 24 / grid.shape[0] * len(row_names))  # small images get bigger pixels
    fig_w = min(16.0, 2.2 + grid.shape[1] * scale / 40)
    fig_h = 1.2 + fig_w * grid.shape[0] / grid.shape[1]
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks(row_ticks, row_names, fontsize=8)
    if col_ticks:
        ax.set_xticks(col_ticks, col_names, fontsize=7, rotation=45, ha="left")
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=9, pad=30 if col_ticks else 6)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, [out_png], dpi=120, tight=True)[0]


def _save(fig, out_stem: str | Path, tight: bool = False) -> list[Path]:
    return save_figure(fig, [Path(out_stem).with_suffix(s) for s in (".png", ".pdf")], tight=tight)


# The HTML report's caption of each figure (`<figure>.rst`, written beside it by plot_figures).
CAPTIONS = {
    "fig2": "Fig. 2: (a) the paper's view, the remaining budget log2 N - I(t) per position, with "
    "a Power schedule from K_min = 16 and (against the paper) its language reference; (b) the "
    "per-position bound min(log2 K_t, log2 N - I(t)), and the measured conditional entropy "
    "where the run has measured it; (c) the codebook size K_t of each schedule.",
    "position_loss": "AR cross-entropy per token position, train (EMA over steps) and val.",
    "tokenizer_curves": "Tokenizer training: one panel per loss term, one line per schedule.",
    "ar_curves": "AR training: loss per step and on the held-out val tokens.",
    "codebook_usage": "Codebook usage per position on the val split: codes used vs K_t, and "
    "used / K_t.",
    "reconstructions": "Val images (top row) and each tokenizer's reconstruction of them.",
    "samples": "Uncurated samples of one preset: one each of random distinct classes, as the "
    "paper's Figs. 3-11 (seeded by sampling.seed).",
    "samples_per_class": "Samples of one preset, one row per class (the first classes).",
}


def caption_rst(stem: str) -> str:
    """The report caption (reStructuredText) of the figure file `stem`."""
    if stem.startswith("fig2"):
        key = "fig2"
    elif stem.startswith("samples_"):
        key = "samples_per_class" if stem.endswith("_per_class") else "samples"
    else:
        key = stem
    return "{% raw %}\n" + CAPTIONS[key] + "\n{% endraw %}\n"
