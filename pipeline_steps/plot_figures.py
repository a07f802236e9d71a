"""Plot Fig. 2 (budget and K_t per schedule), per-position AR loss, sample grids, reconstructions
and training curves, each titled with the experiment (and schedule and preset where it applies):
all files or none."""

from functools import partial
from pathlib import Path

import yaml

from vcq import runfiles
from vcq.cli import load_step_config, report_parser, run_step, setup_logging
from vcq.config import load_config
from vcq.data.images import split_images
from vcq.io import staged_dir
from vcq.metrics.records import ReconstructionMetrics, records_by_name
from vcq.paths import Layout
from vcq.report import figures, merge_schedules, schedule_names, with_data_manifest
from vcq.sampling import find_preset, sampled_pairs

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


def _preset_text(cfg: dict, name: str) -> str:
    p = find_preset(cfg["sampling"], name)
    if p.get("guidance", "none") == "none":
        return f"preset {name} (no CFG, temperature {p.get('temperature', 1.0)})"
    return f"preset {name} ({p['guidance']} CFG, scale s = {p.get('scale')})"


def main() -> None:
    """CLI entry point."""
    parser = report_parser(
        __doc__,
        out_dir="folder for the figures (PNG + PDF)",
        manifest="the data set's manifest.json: class names, and N where report.n_images is null",
        only_theory="only Fig. 2 from the config (theoretical budget and K_t), no run files",
        entropy_csv="results/{exp}/entropy/<schedule>.csv; omit for the theory-only Fig. 2",
        position_loss="results/{exp}/ar/<schedule>_position_loss.csv",
        samples="work/{exp}/samples/<schedule>/<preset>.npz (one grid per file)",
        tokenizer_log="work/{exp}/tokenizer/<schedule>/train_log.jsonl",
        ar_log="work/{exp}/ar/<schedule>/train_log.jsonl",
        recon="results/{exp}/recon/<schedule>.json (codebook usage per position, PSNR)",
        recon_images="work/{exp}/recon/<schedule>.npz (reconstructions and originals)",
    )
    args = parser.parse_args()
    cfg, log = load_step_config(args), setup_logging()
    try:
        cfg, classes = with_data_manifest(cfg, args.manifest)
    except ValueError as e:
        parser.exit(1, f"error: {e}\n")
    with staged_dir(args.out_dir) as stage:
        written = plot(args, cfg, classes, stage)
        for png in [p for p in written if p.suffix == ".png"]:
            png.with_suffix(".rst").write_text(figures.caption_rst(png.stem))
    log.info("wrote %s to %s", [p.name for p in written], args.out_dir)


def _language(cfg: dict, reference: bool) -> dict | None:
    """Fig. 2(a)'s language reference (paper_numbers `fig2a_language`) on the paper's schedules:
    the reference figure, or an experiment compared with the paper."""
    if not (reference or cfg["report"]["paper_comparison"]):
        return None
    paper = yaml.safe_load(Path(cfg["report"]["paper_numbers"]).read_text())
    return paper.get("fig2a_language")


def plot(args, cfg: dict, classes: list[str] | None, out: Path) -> list[Path]:
    """Every figure the flags ask for, into `out`; the paths written."""
    exp = cfg["experiment"]
    if args.only_theory:
        written = figures.plot_schedules(cfg, out / "fig2_theory", language=_language(cfg, False))
        if cfg["report"]["reference_configs"]:
            ref = merge_schedules([load_config(c) for c in cfg["report"]["reference_configs"]])
            written += figures.plot_schedules(
                ref, out / "fig2_theory_reference", language=_language(cfg, True)
            )
        return written
    labels = {s["name"]: s.get("label") or s["name"] for s in cfg["schedules"]}
    names = schedule_names(cfg)
    pairs = sampled_pairs(cfg)

    entropy = runfiles.frames_by_name(
        args.entropy_csv, runfiles.read_entropy_csv, names, "entropy CSV", "measure_entropy"
    )
    written = figures.plot_schedules(
        cfg, out / "fig2_schedules", entropy, language=_language(cfg, False)
    )
    loss = runfiles.frames_by_name(
        args.position_loss, runfiles.read_position_loss, names, "position-loss file", "train_ar"
    )
    if loss:
        written += figures.plot_lines(
            loss,
            "t",
            ["train_loss", "val_loss"],
            out / "position_loss",
            "position t",
            "cross-entropy (nats)",
            title=f"{exp}: AR loss per token position (train and val)",
            labels={"train_loss": "train (EMA over steps)", "val_loss": "val"},
        )
    recon = records_by_name(args.recon, ReconstructionMetrics, names)
    if recon:
        written += figures.plot_usage(
            recon, out / "codebook_usage", title=f"{exp}: codebook usage on the val split"
        )
    if args.recon_images:
        images = runfiles.by_name(
            args.recon_images,
            runfiles.read_recon_images,
            lambda r: r.schedule,
            names,
            "reconstructions file",
            "eval_recon",
        )
        originals = images[names[0]].originals
        val_labels = split_images(cfg["data"], "val").labels
        notes = {n: f"(PSNR {r.psnr:.1f} dB)" for n, r in recon.items()}
        title = f"{exp}: val images (top row) and each tokenizer's reconstruction"
        if recon:
            title += f"; mean-colour baseline {recon[names[0]].psnr_mean_colour_baseline:.1f} dB"
        written.append(
            figures.plot_reconstructions(
                originals,
                {n: r.recon for n, r in images.items()},
                val_labels[: len(originals)],
                out / "reconstructions.png",
                classes,
                title,
                row_notes=notes,
            )
        )
    samples = runfiles.by_name(
        args.samples,
        runfiles.read_samples,
        lambda s: (s.schedule, s.preset),
        pairs,
        "sample file",
        "sample",
    )
    layout = Layout.of(cfg)
    for (schedule, preset), sample in samples.items():
        title = (
            f"{exp}: samples of {labels.get(schedule, schedule)} ({schedule}), "
            f"{_preset_text(cfg, preset)}"
        )
        grid = out / Path(layout.sample_grid(schedule, preset)).name
        written.append(
            figures.sample_mosaic(
                sample,
                grid,
                seed=cfg["sampling"]["seed"],
                class_names=classes,
                title=f"{title}\nuncurated: one sample each of random distinct classes",
            )
        )
        grid = out / Path(layout.sample_grid(schedule, preset, "per_class")).name
        written.append(
            figures.sample_grid(
                sample, grid, class_names=classes, title=f"{title}\none row per class"
            )
        )
    for paths, panels, stem, model, rule in (
        (args.tokenizer_log, TOKENIZER_PANELS, "tokenizer_curves", "tokenizer", "train_tokenizer"),
        (args.ar_log, AR_PANELS, "ar_curves", "AR model", "train_ar"),
    ):
        if paths:
            written += figures.plot_panels(
                runfiles.frames_by_name(
                    paths, partial(runfiles.read_log, rule=rule), names, "training log", rule
                ),
                panels,
                out / stem,
                f"{exp}: {model} training, one line per codebook schedule",
            )
    return written


if __name__ == "__main__":
    run_step(main)
