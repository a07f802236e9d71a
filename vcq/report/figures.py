"""The paper's figures (Fig. 2, samples as in Figs. 3–11) and the run's curves by registry: each
figure is a drawing function plus one `FigureSpec` in `FIGURES`.

A drawing function turns `FigureInputs` (the config and the run files, each read when first asked
for) into files in a folder. The workflow (`theory` and `figures` rules: outputs, report entries
and their captions, so provenance.json too) and `pipeline_steps/plot_figures.py` follow `FIGURES`
(docs/EXTENDING.md, "Add a figure").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from vcq import runfiles, schedules
from vcq.metrics.records import ReconstructionMetrics, records_by_name
from vcq.paths import Layout
from vcq.plotting import image_grid, pyplot, save_figure
from vcq.report import merge_schedules, schedule_names
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


# --- the registry ----------------------------------------------------------------------------

# The run files figures can read: plot_figures flag (--KIND, a list of files) and its help.
_HINT, _S = Layout("work", "results", "{exp}"), "<schedule>"
INPUTS = {
    "entropy_csv": f"{_HINT.entropy(_S, 'csv')} (measure_entropy)",
    "position_loss": f"{_HINT.position_loss(_S)} (train_ar)",
    "recon": f"{_HINT.recon(_S)} (eval_recon: codebook usage per position, PSNR)",
    "recon_images": f"{_HINT.recon_images(_S)} (eval_recon: reconstructions and originals)",
    "samples": f"{_HINT.samples(_S, '<preset>')} (sample; one grid per file)",
    "tokenizer_log": f"{_HINT.tokenizer_log(_S)} (train_tokenizer)",
    "ar_log": f"{_HINT.ar_log(_S)} (train_ar)",
}


@dataclass
class FigureInputs:
    """What figures are drawn from: the config (`report.n_images` filled), the data set's class
    names, and the run files given per `INPUTS` kind, each read (and checked against the config's
    schedules) when a figure first asks for it; a kind given no files reads as empty."""

    cfg: dict
    classes: list[str] | None = None
    files: dict[str, list[str]] = field(default_factory=dict)

    @cached_property
    def names(self) -> list[str]:
        """The schedules, in config order."""
        return schedule_names(self.cfg)

    @cached_property
    def entropy(self) -> dict[str, pd.DataFrame]:
        """Per-position entropy frames by schedule."""
        return runfiles.frames_by_name(
            self.files.get("entropy_csv", []),
            runfiles.read_entropy_csv,
            self.names,
            "entropy CSV",
            "measure_entropy",
        )

    @cached_property
    def position_loss(self) -> dict[str, pd.DataFrame]:
        """Per-position AR loss frames by schedule."""
        return runfiles.frames_by_name(
            self.files.get("position_loss", []),
            runfiles.read_position_loss,
            self.names,
            "position-loss file",
            "train_ar",
        )

    @cached_property
    def recon(self) -> dict[str, ReconstructionMetrics]:
        """Reconstruction records by schedule."""
        return records_by_name(self.files.get("recon", []), ReconstructionMetrics, self.names)

    @cached_property
    def recon_images(self) -> dict[str, runfiles.ReconImages]:
        """Reconstructions and originals by schedule."""
        return runfiles.by_name(
            self.files.get("recon_images", []),
            runfiles.read_recon_images,
            lambda r: r.schedule,
            self.names,
            "reconstructions file",
            "eval_recon",
        )

    @cached_property
    def samples(self) -> dict[tuple[str, str], Samples]:
        """Samples by (schedule, preset)."""
        from vcq.sampling import sampled_pairs

        return runfiles.by_name(
            self.files.get("samples", []),
            runfiles.read_samples,
            lambda s: (s.schedule, s.preset),
            sampled_pairs(self.cfg),
            "sample file",
            "sample",
        )

    def log(self, kind: str, rule: str) -> dict[str, pd.DataFrame]:
        """Training-log frames by schedule (`kind` tokenizer_log or ar_log, written by `rule`)."""
        return runfiles.frames_by_name(
            self.files.get(kind, []),
            partial(runfiles.read_log, rule=rule),
            self.names,
            "training log",
            rule,
        )


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its file stem, report caption and how it is drawn.

    `draw(inputs, folder)` writes the figure's files into `folder` and returns their paths (none
    when the run files it reads were not given). `group` is `theory` (from the config alone, rule
    `theory`) or `run` (rule `figures`); `stems(cfg)` lists the files of a figure drawn once per
    something (default: `[name]`); `enabled(cfg)` leaves it out of configs that do not ask for it.
    """

    name: str
    caption: str
    draw: Callable[[FigureInputs, Path], list[Path]]
    group: str = "run"
    formats: tuple[str, ...] = ("png", "pdf")
    category: str = "Figures"
    stems: Callable[[dict], list[str]] | None = None
    enabled: Callable[[dict], bool] = lambda cfg: True

    def files(self, cfg: dict) -> list[str]:
        """The file stems this figure writes for `cfg`."""
        return self.stems(cfg) if self.stems else [self.name]


FIGURES: dict[str, FigureSpec] = {}


def register_figure(spec: FigureSpec) -> FigureSpec:
    """Add a figure to the registry (a name already registered is an error)."""
    if spec.name in FIGURES:
        raise ValueError(f"figure {spec.name!r} is registered already")
    if spec.group not in ("theory", "run"):
        raise ValueError(f"figure {spec.name!r}: unknown group {spec.group!r}")
    FIGURES[spec.name] = spec
    return spec


def figures_of(group: str, cfg: dict) -> list[FigureSpec]:
    """The registered figures of `group` that `cfg` asks for, in registration order."""
    return [s for s in FIGURES.values() if s.group == group and s.enabled(cfg)]


def caption_rst(caption: str) -> str:
    """A figure's report caption as the reStructuredText file written beside it."""
    return "{% raw %}\n" + caption + "\n{% endraw %}\n"


# --- the figures -------------------------------------------------------------------------------

TOKENIZER_PANELS = [
    {
        "keys": ["l1"],
        "ylabel": "L1 loss (pixels in [-1, 1])",
        "caption": "L1: mean |x − x̂| between an image and its reconstruction\n"
        "(the main tokenizer objective).",
    },
    {
        "keys": ["quant"],
        "ylabel": "quantizer loss",
        "caption": "Quantizer loss: squared distance between encoder latents\n"
        "and their nearest allowed code (codebook + β·commitment).\n"
        "It rises while training: the encoder spreads its latents\n"
        "to carry more about each image than the first K_t codes\n"
        "can represent. A cost of the bottleneck, not divergence.",
    },
    {
        "keys": ["lpips"],
        "ylabel": "LPIPS",
        "caption": "LPIPS: perceptual distance (VGG16 features).",
    },
    {
        "keys": ["gen_adv", "disc"],
        "ylabel": "GAN loss",
        "caption": "GAN: generator adversarial loss and discriminator loss\n"
        "(only after tokenizer.train.disc_start).",
    },
    {
        "keys": ["used_fraction"],
        "ylabel": "fraction of codes used in a batch",
        "caption": "Codebook use: share of the K_max codes picked at least\n"
        "once in a training batch (dead codes are restarted).",
    },
]
AR_PANELS = [
    {
        "keys": ["loss", "val_loss"],
        "styles": ["-", "o-"],
        "ylabel": "cross-entropy per token (nats)",
        "caption": "Line: training loss per step. Dots: loss on the held-out val split's\n"
        "tokens (every ar.train.val_every steps). A widening gap between\n"
        "them means the model memorises the training images.",
    },
    {
        "keys": ["prologue_loss"],
        "ylabel": "prologue cross-entropy (nats)",
        "caption": "Prologue tokens' cross-entropy (only with ar.prologue).",
    },
]


def _language(cfg: dict, reference: bool) -> dict | None:
    """Fig. 2(a)'s language reference (paper_numbers `fig2a_language`) on the paper's schedules:
    the reference figure, or an experiment compared with the paper."""
    if not (reference or cfg["report"]["paper_comparison"]):
        return None
    paper = yaml.safe_load(Path(cfg["report"]["paper_numbers"]).read_text())
    return paper.get("fig2a_language")


def _preset_text(cfg: dict, name: str) -> str:
    from vcq.sampling import find_preset

    p = find_preset(cfg["sampling"], name)
    if p.get("guidance", "none") == "none":
        return f"preset {name} (no CFG, temperature {p.get('temperature', 1.0)})"
    return f"preset {name} ({p['guidance']} CFG, scale s = {p.get('scale')})"


def _fig2_theory(inputs: FigureInputs, out: Path) -> list[Path]:
    return plot_schedules(inputs.cfg, out / "fig2_theory", language=_language(inputs.cfg, False))


def _fig2_theory_reference(inputs: FigureInputs, out: Path) -> list[Path]:
    from vcq.config import load_config

    cfg = inputs.cfg
    ref = merge_schedules([load_config(c) for c in cfg["report"]["reference_configs"]])
    return plot_schedules(ref, out / "fig2_theory_reference", language=_language(cfg, True))


def _fig2_schedules(inputs: FigureInputs, out: Path) -> list[Path]:
    cfg = inputs.cfg
    return plot_schedules(cfg, out / "fig2_schedules", inputs.entropy, _language(cfg, False))


def _position_loss(inputs: FigureInputs, out: Path) -> list[Path]:
    if not inputs.position_loss:
        return []
    return plot_lines(
        inputs.position_loss,
        "t",
        ["train_loss", "val_loss"],
        out / "position_loss",
        "position t",
        "cross-entropy (nats)",
        title=f"{inputs.cfg['experiment']}: AR loss per token position (train and val)",
        labels={"train_loss": "train (EMA over steps)", "val_loss": "val"},
    )


def _codebook_usage(inputs: FigureInputs, out: Path) -> list[Path]:
    if not inputs.recon:
        return []
    title = f"{inputs.cfg['experiment']}: codebook usage on the val split"
    return plot_usage(inputs.recon, out / "codebook_usage", title=title)


def _reconstructions(inputs: FigureInputs, out: Path) -> list[Path]:
    from vcq.data.images import split_images

    if not inputs.recon_images:
        return []
    names, recon, images = inputs.names, inputs.recon, inputs.recon_images
    originals = images[names[0]].originals
    val_labels = split_images(inputs.cfg["data"], "val").labels
    notes = {n: f"(PSNR {r.psnr:.1f} dB)" for n, r in recon.items()}
    title = f"{inputs.cfg['experiment']}: val images (top row) and each tokenizer's reconstruction"
    if recon:
        title += f"; mean-colour baseline {recon[names[0]].psnr_mean_colour_baseline:.1f} dB"
    return [
        plot_reconstructions(
            originals,
            {n: r.recon for n, r in images.items()},
            val_labels[: len(originals)],
            out / "reconstructions.png",
            inputs.classes,
            title,
            row_notes=notes,
        )
    ]


def _sample_title(cfg: dict, schedule: str, preset: str) -> str:
    label = next(s.get("label") or s["name"] for s in cfg["schedules"] if s["name"] == schedule)
    return f"{cfg['experiment']}: samples of {label} ({schedule}), {_preset_text(cfg, preset)}"


def _sample_stems(view: str) -> Callable[[dict], list[str]]:
    """The file stems of a samples figure: one per sampled (schedule, preset)."""

    def stems(cfg: dict) -> list[str]:
        from vcq.sampling import sampled_pairs

        layout = Layout.of(cfg)
        return [Path(layout.sample_grid(s, p, view)).stem for s, p in sampled_pairs(cfg)]

    return stems


def _samples(inputs: FigureInputs, out: Path) -> list[Path]:
    cfg, layout = inputs.cfg, Layout.of(inputs.cfg)
    return [
        sample_mosaic(
            sample,
            out / Path(layout.sample_grid(schedule, preset)).name,
            seed=cfg["sampling"]["seed"],
            class_names=inputs.classes,
            title=f"{_sample_title(cfg, schedule, preset)}\n"
            "uncurated: one sample each of random distinct classes",
        )
        for (schedule, preset), sample in inputs.samples.items()
    ]


def _samples_per_class(inputs: FigureInputs, out: Path) -> list[Path]:
    cfg, layout = inputs.cfg, Layout.of(inputs.cfg)
    return [
        sample_grid(
            sample,
            out / Path(layout.sample_grid(schedule, preset, "per_class")).name,
            class_names=inputs.classes,
            title=f"{_sample_title(cfg, schedule, preset)}\none row per class",
        )
        for (schedule, preset), sample in inputs.samples.items()
    ]


def _curves(kind: str, rule: str, panels: list[dict], stem: str, model: str):
    """A training-curves figure of the logs of `kind` (one line per schedule)."""

    def draw(inputs: FigureInputs, out: Path) -> list[Path]:
        if not inputs.files.get(kind):
            return []
        title = f"{inputs.cfg['experiment']}: {model} training, one line per codebook schedule"
        return plot_panels(inputs.log(kind, rule), panels, out / stem, title)

    return draw


_FIG2 = (
    "Fig. 2: (a) the paper's view, the remaining budget log2 N - I(t) per position, with a Power "
    "schedule from K_min = 16 and (against the paper) its language reference; (b) the "
    "per-position bound min(log2 K_t, log2 N - I(t)), and the measured conditional entropy "
    "where the run has measured it; (c) the codebook size K_t of each schedule."
)
register_figure(FigureSpec("fig2_theory", _FIG2, _fig2_theory, "theory", category="Theory"))
register_figure(
    FigureSpec(
        "fig2_theory_reference",
        _FIG2,
        _fig2_theory_reference,
        "theory",
        category="Theory",
        enabled=lambda cfg: bool(cfg["report"]["reference_configs"]),
    )
)
register_figure(FigureSpec("fig2_schedules", _FIG2, _fig2_schedules))
register_figure(
    FigureSpec(
        "position_loss",
        "AR cross-entropy per token position, train (EMA over steps) and val.",
        _position_loss,
    )
)
register_figure(
    FigureSpec(
        "tokenizer_curves",
        "Tokenizer training: one panel per loss term, one line per schedule.",
        _curves(
            "tokenizer_log", "train_tokenizer", TOKENIZER_PANELS, "tokenizer_curves", "tokenizer"
        ),
    )
)
register_figure(
    FigureSpec(
        "ar_curves",
        "AR training: loss per step and on the held-out val tokens.",
        _curves("ar_log", "train_ar", AR_PANELS, "ar_curves", "AR model"),
    )
)
register_figure(
    FigureSpec(
        "codebook_usage",
        "Codebook usage per position on the val split: codes used vs K_t, and used / K_t.",
        _codebook_usage,
    )
)
register_figure(
    FigureSpec(
        "reconstructions",
        "Val images (top row) and each tokenizer's reconstruction of them.",
        _reconstructions,
        formats=("png",),
    )
)
register_figure(
    FigureSpec(
        "samples",
        "Uncurated samples of one preset: one each of random distinct classes, as the paper's "
        "Figs. 3-11 (seeded by sampling.seed).",
        _samples,
        formats=("png",),
        category="Samples",
        stems=_sample_stems("random"),
    )
)
register_figure(
    FigureSpec(
        "samples_per_class",
        "Samples of one preset, one row per class (the first classes).",
        _samples_per_class,
        formats=("png",),
        category="Samples",
        stems=_sample_stems("per_class"),
    )
)
