"""Plot Fig. 2 (budget and K_t per schedule), per-position AR loss, sample grids, reconstructions
and training curves, each titled with the experiment (and schedule and preset where it applies)."""

from pathlib import Path

import numpy as np

from vcq import report
from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.config import load_config
from vcq.data.images import ImageFolderDataset
from vcq.io import StepError, read_json
from vcq.paths import Layout
from vcq.sampling import find_preset, presets_for

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


def _existing(paths: list[str], flag: str) -> list[str]:
    """`paths`, each of which must exist (a missing one is an error naming its flag)."""
    for p in paths:
        if not Path(p).exists():
            raise StepError(f"{flag} {p}: missing (run the workflow up to the rule that writes it)")
    return paths


def _by_schedule(paths: list[str], flag: str) -> dict[str, str]:
    """Schedule name -> metric JSON, named by each file's own `schedule`."""
    return {read_json(p)["schedule"]: p for p in _existing(paths, flag)}


def _in_order(paths: list[str], keys: list, flag: str) -> dict:
    """Files that carry no schedule name (CSV, .npy, .npz, JSONL logs): the workflow passes them
    in the config's order, one per key (schedule, or (schedule, preset) pair)."""
    if paths and len(paths) != len(keys):
        raise StepError(f"{flag}: {len(paths)} files for {len(keys)} entries {keys}")
    return dict(zip(keys, _existing(paths, flag), strict=False))


def _preset_text(cfg: dict, name: str) -> str:
    p = find_preset(cfg["sampling"], name)
    if p.get("guidance", "none") == "none":
        return f"preset {name} (no CFG, temperature {p.get('temperature', 1.0)})"
    return f"preset {name} ({p['guidance']} CFG, scale s = {p.get('scale')})"


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument("--out-dir", required=True, help="folder for the figures (PNG + PDF)")
    parser.add_argument(
        "--entropy-csv",
        nargs="*",
        default=[],
        help="results/{exp}/entropy/<schedule>.csv; omit for the theory-only Fig. 2",
    )
    parser.add_argument(
        "--position-loss",
        nargs="*",
        default=[],
        help="results/{exp}/ar/<schedule>_position_loss.csv",
    )
    parser.add_argument(
        "--samples",
        nargs="*",
        default=[],
        help="work/{exp}/samples/<schedule>/<preset>.npz (one grid per file)",
    )
    parser.add_argument(
        "--tokenizer-log",
        nargs="*",
        default=[],
        help="work/{exp}/tokenizer/<schedule>/train_log.jsonl (named by parent folder)",
    )
    parser.add_argument(
        "--ar-log",
        nargs="*",
        default=[],
        help="work/{exp}/ar/<schedule>/train_log.jsonl (named by parent folder)",
    )
    parser.add_argument(
        "--recon",
        nargs="*",
        default=[],
        help="results/{exp}/recon/<schedule>.json (codebook usage per position, PSNR)",
    )
    parser.add_argument(
        "--recon-images",
        nargs="*",
        default=[],
        help="work/{exp}/recon/<schedule>.npy (originals beside it as <schedule>_orig.npy)",
    )
    parser.add_argument(
        "--manifest",
        default=None,
        help="the data set's manifest.json: class names, and N where report.n_images is null",
    )
    parser.add_argument(
        "--only-theory",
        action="store_true",
        help="only Fig. 2 from the config (theoretical budget and K_t), no run files",
    )
    args = parser.parse_args()
    cfg, log = load_step_config(args), setup_logging()
    try:
        cfg, classes = report.with_data_manifest(cfg, args.manifest)
    except ValueError as e:
        parser.exit(1, f"error: {e}\n")
    out, exp = Path(args.out_dir), cfg["experiment"]
    if args.only_theory:
        written = report.plot_schedules(cfg, out / "fig2_theory")
        if cfg["report"]["reference_configs"]:
            ref = report.merge_schedules(
                [load_config(c) for c in cfg["report"]["reference_configs"]]
            )
            written += report.plot_schedules(ref, out / "fig2_theory_reference")
        log.info("wrote %s", [str(p) for p in written])
        return
    labels = {s["name"]: s.get("label") or s["name"] for s in cfg["schedules"]}
    names = report.schedule_names(cfg)
    pairs = [(s, p["name"]) for s in names for p in presets_for(cfg["sampling"], s)]
    root = Path(cfg["data"]["root"])
    entropy = _in_order(args.entropy_csv, names, "--entropy-csv")
    written = report.plot_schedules(cfg, out / "fig2_schedules", entropy)
    if args.position_loss:
        position_loss = _in_order(args.position_loss, names, "--position-loss")
        written += report.plot_lines(
            position_loss,
            "t",
            ["train_loss", "val_loss"],
            out / "position_loss",
            "position t",
            "cross-entropy (nats)",
            title=f"{exp}: AR loss per token position (train and val)",
        )
    if args.recon:
        written += report.plot_usage(
            _by_schedule(args.recon, "--recon"),
            out / "codebook_usage",
            title=f"{exp}: codebook usage on the val split",
        )
    if args.recon_images:
        recons = {
            n: np.load(p, mmap_mode="r")
            for n, p in _in_order(args.recon_images, names, "--recon-images").items()
        }
        first = Path(args.recon_images[0])
        originals = np.load(first.with_name(first.stem + "_orig.npy"), mmap_mode="r")
        val_labels = ImageFolderDataset(root / "val").labels[: len(originals)]
        notes = {
            n: f"(PSNR {read_json(p)['psnr']:.1f} dB)"
            for n, p in _by_schedule(args.recon, "--recon").items()
        }
        baseline = next((read_json(p)["psnr_mean_colour_baseline"] for p in args.recon), None)
        title = f"{exp}: val images (top row) and each tokenizer's reconstruction"
        if baseline is not None:
            title += f"; mean-colour baseline {baseline:.1f} dB"
        written.append(
            report.plot_reconstructions(
                originals,
                recons,
                val_labels,
                out / "reconstructions.png",
                classes,
                title,
                row_notes=notes,
            )
        )
    for (schedule, preset), npz in _in_order(args.samples, pairs, "--samples").items():
        title = (
            f"{exp}: samples of {labels.get(schedule, schedule)} ({schedule}), "
            f"{_preset_text(cfg, preset)}\none row per class"
        )
        grid = out / Path(Layout.of(cfg).sample_grid(schedule, preset)).name
        written.append(report.sample_grid(npz, grid, class_names=classes, title=title))
    if args.tokenizer_log:
        tokenizer_logs = _in_order(args.tokenizer_log, names, "--tokenizer-log")
        written += report.plot_panels(
            tokenizer_logs,
            TOKENIZER_PANELS,
            out / "tokenizer_curves",
            f"{exp}: tokenizer training, one line per codebook schedule",
        )
    if args.ar_log:
        written += report.plot_panels(
            _in_order(args.ar_log, names, "--ar-log"),
            AR_PANELS,
            out / "ar_curves",
            f"{exp}: AR model training, one line per codebook schedule",
        )
    log.info("wrote %s", [str(p) for p in written])


if __name__ == "__main__":
    run_step(main)
