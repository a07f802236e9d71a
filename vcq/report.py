"""Paper tables (1, 2, 4, 5, 6, 8/9) and figures from the config and the runs' metric files."""

from __future__ import annotations

import glob
import math
from pathlib import Path

import numpy as np
import pandas as pd

from vcq import schedules
from vcq.entropy import cliff_position
from vcq.io import atomic_path, read_json
from vcq.paths import Layout
from vcq.plotting import image_grid, pyplot, save_figure
from vcq.runfiles import Samples

MISSING_NOTE = "empty cell: input file not produced (step not run)"


def with_data_manifest(cfg: dict, manifest: str | Path | None) -> tuple[dict, list[str] | None]:
    """(cfg with `report.n_images` filled from the data manifest's train count where it is null,
    the class names in label order); the manifest may be absent when n_images is set.

    Labels everywhere are ImageFolderDataset's: the index of the class folder in sorted order.
    """
    data = read_json(manifest, "make_dataset") if manifest and Path(manifest).exists() else None
    if cfg["report"]["n_images"] is None:
        if data is None:
            raise ValueError(
                f"report.n_images is not set and the data manifest {manifest} does not exist "
                "(run make_dataset first, or set report.n_images)"
            )
        cfg = {**cfg, "report": {**cfg["report"], "n_images": int(data["counts"]["train"])}}
    return cfg, sorted(data["classes"]) if data and "classes" in data else None


def table1_notes(k: int, imagenet_n: int = 1281167) -> list[str]:
    """What Table 1's columns mean."""
    return [
        f"t_star: Eq. 2 with a constant codebook K = {k:,} (the paper's), the first t with "
        "t * log2 K >= log2 N",
        f"x_ImageNet: N as a multiple of ImageNet-1K's {imagenet_n:,} training images",
    ]


def table1(
    datasets: list[dict], k: int, thresholds: list[int], imagenet_n: int = 1281167
) -> pd.DataFrame:
    """Table 1: log2 N and t* per dataset, then the data thresholds N_m = K^(m-1)."""
    rows = [
        {
            "regime": d["name"],
            "N": int(d["n"]),
            "log2_N": round(math.log2(d["n"]), 1),
            "t_star": cliff_position(d["n"], k),
            "x_ImageNet": np.nan,
        }
        for d in datasets
    ]
    for m in thresholds:
        n_m = int(k) ** (m - 1)
        rows.append(
            {
                "regime": f"t*={m} threshold",
                "N": n_m,
                "log2_N": round(math.log2(n_m), 1),
                "t_star": m,
                "x_ImageNet": round(n_m / imagenet_n, 4),
            }
        )
    return pd.DataFrame(rows)


def table2(cfg: dict, entropy_jsons: dict[str, str] | None = None) -> pd.DataFrame:
    """Table 2: per schedule Kmin, Kmax, K̄, BPP, theoretical and (if measured) empirical t*."""
    from vcq.config import k_sizes_for

    n = cfg["report"]["n_images"]
    rows = []
    for name in schedule_names(cfg):
        k_sizes = k_sizes_for(cfg, name)
        rows.append(
            {
                "schedule": name,
                "k_min": int(k_sizes.min()),
                "k_max": int(k_sizes.max()),
                "k_mean": round(schedules.mean_codebook_size(k_sizes)),
                "bpp": round(schedules.bits_per_pixel(k_sizes, cfg_image_size(cfg)), 3),
                "t_star_theory": schedules.cliff_position_vcq(k_sizes, n),
                "t_star_measured": _json_value((entropy_jsons or {}).get(name), "t_star_measured"),
            }
        )
    return pd.DataFrame(rows)


def table2_notes(
    cfg: dict,
    threshold_bits: float | None,
    paper_t2: dict | None = None,
    fig2a_bits: float | None = None,
) -> list[str]:
    """Table 2 footnotes: how t* is defined, and each schedule whose printed t* contradicts Eq. 2.

    A printed t* below Eq. 2's t*_vcq is impossible for the full set: the first t tokens have at
    most prod K_s = 2^I(t) distinct prefixes, fewer than N, so x_t cannot be determined by them.
    """
    from vcq.config import k_sizes_for

    n = cfg["report"]["n_images"]
    notes = [f"t_star_theory: Eq. 2, the first t with sum_(s<t) log2 K_s >= log2 N, N = {n:,}"]
    if threshold_bits is not None:
        notes.append(
            f"t_star_measured: the first t from which the measured H(x_s | x_<s) stays below "
            f"{threshold_bits:g} bits for every s >= t (entropy.threshold_bits). It is later "
            "than t_star_theory when tokens use fewer than log2 K_s bits per position (unused "
            "or unevenly used codes): Eq. 2 is the earliest cliff any tokenizer can have"
        )
    for name in schedule_names(cfg):
        printed = (paper_t2 or {}).get(name, {}).get("t_star")
        k_sizes = k_sizes_for(cfg, name)
        theory = schedules.cliff_position_vcq(k_sizes, n)
        if printed is None or printed >= theory:
            continue
        bits = schedules.cumulative_information(k_sizes)[printed]
        note = (
            f"{name}: the paper's t* ~{printed} contradicts Eq. 2: "
            f"the first {printed} tokens have at "
            f"most 2^{bits:.1f} distinct prefixes, fewer than N = {n:,} (Eq. 2: t* = {theory}"
        )
        if fig2a_bits is not None:
            small = round(2**fig2a_bits)
            note += (
                f"; {schedules.cliff_position_vcq(k_sizes, small)} even at Fig. 2a's "
                f"~{fig2a_bits:g}-bit budget, N = {small:,}"
            )
        notes.append(note + ")")
    return notes


def best_preset(gen_jsons: list[str], guided: bool) -> dict | None:
    """The generation-metrics record with the lowest FID among guided (or unguided) presets."""
    records = [read_json(p) for p in gen_jsons if Path(p).exists()]
    records = [
        r for r in records if (r.get("preset", {}).get("guidance", "none") != "none") == guided
    ]
    return min(records, key=lambda r: r["fid"]) if records else None


PSNR = "PSNR (dB)"
PSNR_BASELINE = "PSNR mean-colour baseline (dB)"
CLASS_ACC = "class accuracy of samples (demo classifier)"
CLASS_ACC_NOCFG = f"{CLASS_ACC} w/o CFG"
CLASS_ACC_REAL = "class accuracy of real val images (demo classifier)"


def table4(
    names: list[str],
    recon: dict[str, str],
    gen: dict[str, list[str]],
    k_sizes: dict[str, np.ndarray],
    image_size: int = 256,
) -> pd.DataFrame:
    """Table 4 analogue: K̄, BPP, PSNR (and its mean-colour baseline), rFD, best guided gFD (with
    preset) and unguided gFD; with demo features also the demo classifier's accuracy on samples."""
    rows, label = [], "FID"
    for name in names:
        rec = read_json(recon[name]) if name in recon and Path(recon[name]).exists() else {}
        best = best_preset(gen.get(name, []), guided=True)
        plain = best_preset(gen.get(name, []), guided=False)
        label = next((r["fd_label"] for r in (rec, best, plain) if r and "fd_label" in r), label)
        rows.append(
            {
                "schedule": name,
                "k_mean": round(schedules.mean_codebook_size(k_sizes[name])),
                "bpp": round(schedules.bits_per_pixel(k_sizes[name], image_size), 3),
                PSNR: rec.get("psnr", np.nan),
                PSNR_BASELINE: rec.get("psnr_mean_colour_baseline", np.nan),
                "r": rec.get("rfid", np.nan),
                "g": best["fid"] if best else np.nan,
                "best_preset": best["preset"].get("name", "") if best else "",
                "g_nocfg": plain["fid"] if plain else np.nan,
                CLASS_ACC: _get(best, "class_accuracy"),
                CLASS_ACC_NOCFG: _get(plain, "class_accuracy"),
                CLASS_ACC_REAL: _get(best or plain, "class_accuracy_reference"),
            }
        )
    df = pd.DataFrame(rows)
    # Only the demo feature network is a classifier of the data set's classes.
    df = df.drop(
        columns=[c for c in (CLASS_ACC, CLASS_ACC_NOCFG, CLASS_ACC_REAL) if df[c].isna().all()]
    )
    return df.rename(columns={"r": f"r{label}", "g": f"g{label}", "g_nocfg": f"g{label} w/o CFG"})


def table4_notes(df: pd.DataFrame) -> list[str]:
    """What Table 4's less obvious columns mean (only for the columns present)."""
    gcol = next((c for c in df.columns if c.startswith("g") and not c.endswith("w/o CFG")), "gFID")
    notes = {
        PSNR_BASELINE: f"{PSNR_BASELINE}: every val image replaced by its own mean colour, "
        "i.e. a tokenizer "
        "that keeps nothing but the colour",
        "best_preset": f"{gcol}: the best (lowest) over the guided presets; best_preset names it",
        CLASS_ACC: f"{CLASS_ACC}: share of the best guided preset's samples that "
        "the demo feature network "
        "(a classifier trained on the demo train images) assigns to the class they were "
        "conditioned on; chance is 1 / number of classes. A demo metric, not one of the paper's",
        CLASS_ACC_NOCFG: f"{CLASS_ACC_NOCFG}: the same for the unguided samples",
        CLASS_ACC_REAL: f"{CLASS_ACC_REAL}: the same classifier on the real val images "
        "(its ceiling)",
    }
    return [text for col, text in notes.items() if col in df.columns]


def summary(
    cfg: dict, tables: dict[str, pd.DataFrame], position_loss: dict[str, pd.DataFrame]
) -> str:
    """Markdown with the key figures of every table of a run (results/<exp>/summary.md);
    `position_loss` maps a schedule to its `vcq.runfiles.read_position_loss` frame."""
    exp = cfg["experiment"]
    out = [
        f"# {exp}: key figures of this run",
        "",
        (
            "Written by `pipeline_steps/make_tables.py` from the metric files of "
            f"experiment `{exp}`; "
            "the full tables (with footnotes) are in `tables/`."
        ),
        "",
    ]
    t4 = tables.get("table4")
    if t4 is not None and len(t4):
        out += ["## Reconstruction and generation (table4)", ""]
        g = next((c for c in t4.columns if c.startswith("g") and not c.endswith("w/o CFG")), None)
        for row in t4.to_dict("records"):
            line = f"- **{row['schedule']}**: PSNR {_fmt(row.get(PSNR))} dB"
            if not _isnan(row.get(PSNR_BASELINE)):
                line += (
                    f" vs {_fmt(row[PSNR_BASELINE])} dB for the mean-colour baseline "
                    f"({_fmt(row[PSNR] - row[PSNR_BASELINE], sign=True)} dB)"
                )
            if g:
                line += (
                    f"; {g} {_fmt(row.get(g))} ({row.get('best_preset') or 'no guided preset'}), "
                    f"w/o CFG {_fmt(row.get(f'{g} w/o CFG'))}"
                )
            if CLASS_ACC in row:
                line += (
                    f"; {CLASS_ACC} {_pct(row.get(CLASS_ACC))} with CFG, "
                    f"{_pct(row.get(CLASS_ACC_NOCFG))} w/o CFG, "
                    f"{_pct(row.get(CLASS_ACC_REAL))} on real val images"
                )
            out.append(line)
        out.append("")
    if position_loss:
        out += ["## AR models (position_loss)", ""]
        out += [
            f"- **{n}**: val loss {df['val_loss'].mean():.3f} nats per token "
            f"(mean over {len(df)} positions), "
            f"train loss {df['train_loss'].mean():.3f} (EMA over training steps)"
            for n, df in position_loss.items()
        ]
        out.append("")
    t2 = tables.get("table2")
    if t2 is not None and len(t2):
        out += ["## Entropy cliff (table2)", ""]
        out += [
            f"- **{r['schedule']}**: K̄ {r['k_mean']}, {r['bpp']} bits per pixel, "
            f"cliff t* {_fmt(r['t_star_measured'], 0)} "
            f"measured vs {r['t_star_theory']} from Eq. 2"
            for r in t2.to_dict("records")
        ]
        out.append("")
    t6 = tables.get("table6")
    if t6 is not None and len(t6):
        out += ["## Linear probe on the tokens (table6)", ""]
        for name, rows in t6.groupby("schedule", sort=False):
            parts = [
                ("" if r.get("features", "codes") == "codes" else f"{r['features']} tokens, ")
                + f"k = {'all' if _isnan(r['k']) else int(r['k'])}: top-1 {_fmt(r['top1'], 1)}%"
                for r in rows.to_dict("records")
            ]
            out.append(f"- **{name}**: " + ", ".join(parts))
        out.append("")
    t89 = tables.get("table8_9")
    if t89 is not None and len(t89):
        out += ["## Guidance strategies (table8_9)", ""]
        for r in t89.to_dict("records"):
            cells = [
                f"{c.split(':')[0]} {_fmt(v)}"
                for c, v in r.items()
                if c != "schedule" and not _isnan(v) and "(paper)" not in c
            ]
            out.append(
                f"- **{r['schedule']}**: " + (", ".join(cells) if cells else "no guided preset")
            )
        metric = next((c.split(": ", 1)[1] for c in t89.columns if ": " in c), "")
        out += ["", f"({metric}, lower is better.)", ""]
    return "\n".join(out) + "\n"


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(x, digits: int = 2, sign: bool = False) -> str:
    if _isnan(x):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _pct(x) -> str:
    if _isnan(x):
        return "n/a"
    return f"{100 * x:.0f}%"


def _get(record: dict | None, key: str) -> float:
    value = record.get(key) if record else None
    return np.nan if value is None else value


TABLE5_METRICS = {
    "rfid": "r",
    "psnr": "psnr",
    "gfid": "g",
    "gfid_nocfg": "g_nocfg",
    "is": "is",
    "precision": "precision",
    "recall": "recall",
}


def table5(rows: list[dict], paper: dict | None = None) -> pd.DataFrame:
    """Table 5 (scaling): per Tok-AR row (`report.scaling`) the run's recon and best generation
    metrics.

    Each row reads `results/<experiment>/recon/<schedule>.json` and `gen/<schedule>/*.json` of its
    own config; gFID is the best guided preset (IS, precision, recall from that preset), gFID w/o
    CFG the best unguided one. With `paper` (paper_numbers table5) a `(paper)` column follows each.
    """
    from vcq.config import load_config

    out, label = [], "FID"
    for spec in rows:
        cfg = load_config(spec["config"])
        layout, name = Layout.of(cfg), spec["schedule"]
        rec_path = Path(layout.recon(name))
        rec = read_json(rec_path) if rec_path.exists() else {}
        gens = sorted(glob.glob(layout.gen(name, "*")))
        best, plain = best_preset(gens, guided=True), best_preset(gens, guided=False)
        label = next((r["fd_label"] for r in (rec, best, plain) if r and "fd_label" in r), label)
        best = best or {}
        out.append(
            {
                "row": spec["row"],
                "experiment": cfg["experiment"],
                "ar_model": cfg["ar"]["model"]["name"],
                "r": rec.get("rfid", np.nan),
                "psnr": rec.get("psnr", np.nan),
                "g": best.get("fid", np.nan),
                "g_nocfg": plain["fid"] if plain else np.nan,
                "is": best.get("is_mean", np.nan),
                "precision": best.get("precision", np.nan),
                "recall": best.get("recall", np.nan),
                "best_preset": best.get("preset", {}).get("name", ""),
            }
        )
    df = pd.DataFrame(
        out, columns=["row", "experiment", "ar_model", *TABLE5_METRICS.values(), "best_preset"]
    )
    if paper is not None:
        for key, col in TABLE5_METRICS.items():
            values = [paper.get(r, {}).get(key, np.nan) for r in df["row"]]
            df.insert(df.columns.get_loc(col) + 1, f"{col} (paper)", values)
    names = {"r": f"r{label}", "g": f"g{label}", "g_nocfg": f"g{label} w/o CFG"}
    return df.rename(columns=names | {f"{k} (paper)": f"{v} (paper)" for k, v in names.items()})


TABLE6_NOTES = [
    "features codes: a linear classifier on the quantized code vectors of the first k tokens "
    "(standardised); prologue: on the k prologue tokens' code vectors",
    "top1, top5: val accuracy in % (linear probe, probe.epochs)",
]


def table6(probe: dict[str, str]) -> pd.DataFrame:
    """Table 6: linear-probe top-1/top-5 per schedule and prefix length k."""
    rows = [
        {"schedule": name, "features": "codes", **r}
        for name, path in probe.items()
        if Path(path).exists()
        for r in read_json(path)["rows"]
    ]
    return pd.DataFrame(rows, columns=["schedule", "features", "k", "top1", "top5"])


def add_probe_paper_columns(df: pd.DataFrame, paper: dict) -> pd.DataFrame:
    """Table 6 with `top1 (paper)`/`top5 (paper)` from `paper[schedule]["k<k>"]`."""
    out = df.copy()
    for col in ("top1", "top5"):
        values = [
            paper.get(s, {}).get(f"k{int(k)}", {}).get(col, np.nan) if f == "codes" else np.nan
            for s, f, k in zip(
                out["schedule"], out.get("features", ["codes"] * len(out)), out["k"], strict=True
            )
        ]
        out.insert(out.columns.get_loc(col) + 1, f"{col} (paper)", values)
    return out


def table_guidance(
    names: list[str], gen: dict[str, list[str]], configured: dict[str, set[str]] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Tables 8/9: per schedule the best gFD/gFID of each guidance strategy (vanilla vs the
    codebook-aware readings, `vcq.sampling.STRATEGIES`), and the footnotes.

    `configured[schedule]` lists the strategies the config samples for it; a cell with no such
    preset is empty by design (e.g. codebook-aware CFG on a constant codebook), which the notes
    say, apart from cells whose step has not run.
    """
    from vcq.sampling import STRATEGIES, guidance_strategy

    rows, label, by_design, missing = [], "FID", set(), set()
    for name in names:
        records = [read_json(p) for p in gen.get(name, []) if Path(p).exists()]
        label = next((r["fd_label"] for r in records if "fd_label" in r), label)
        row = {"schedule": name}
        for g in STRATEGIES:
            fids = [r["fid"] for r in records if guidance_strategy(r.get("preset", {})) == g]
            row[g] = min(fids) if fids else np.nan
            if not fids:
                (
                    missing if configured is None or g in configured.get(name, set()) else by_design
                ).add(g)
        rows.append(row)
    df = pd.DataFrame(rows, columns=["schedule", *STRATEGIES])
    used = [
        g
        for g in STRATEGIES
        if not df[g].isna().all() or (configured and any(g in c for c in configured.values()))
    ]
    df = df[["schedule", *used]]
    metric = f"best g{label}"
    notes = [
        f"each column: the {metric} over the presets of that guidance strategy (lower is better)"
    ]
    notes += [
        f"{g}: empty where no preset applies this guidance to the schedule"
        + (
            " (codebook-aware CFG needs a variable codebook)"
            if g.startswith("codebook-aware")
            else ""
        )
        for g in used
        if g in by_design
    ]
    notes += [f"{g}: {MISSING_NOTE}" for g in used if g in missing and df[g].isna().any()]
    return df.rename(columns={g: f"{g}: {metric}" for g in used}), notes


def add_paper_columns(df: pd.DataFrame, paper: dict, columns: dict[str, str]) -> pd.DataFrame:
    """Insert a `<col> (paper)` column after each column, from `paper[schedule][paper_key]`."""
    out = df.copy()
    for col, key in columns.items():
        values = [paper.get(s, {}).get(key, np.nan) for s in out["schedule"]]
        out.insert(out.columns.get_loc(col) + 1, f"{col} (paper)", values)
    return out


def footnotes(df: pd.DataFrame) -> list[str]:
    """A footnote for every column that has empty cells."""
    return [
        f"{c}: {MISSING_NOTE}"
        for c in df.columns
        if df[c].isna().any() and not c.endswith("(paper)")
    ]


def write_table(df: pd.DataFrame, stem: str | Path, notes: list[str] | None = None) -> list[Path]:
    """Write `df` as `<stem>.csv`, `.md` and `.tex` atomically; notes go below the md/tex table."""
    stem, notes = Path(stem), notes if notes is not None else footnotes(df)
    paths = [stem.with_suffix(s) for s in (".csv", ".md", ".tex")]
    texts = [
        df.to_csv(index=False),
        # four significant digits for reading; the CSV keeps every digit
        df.astype(object).where(df.notna(), "").to_markdown(index=False, floatfmt=".4g")
        + "".join(f"\n\n{n}" for n in notes)
        + "\n",
        df.to_latex(index=False, na_rep="", float_format="%.3g")
        + "".join(f"% {n}\n" for n in notes),
    ]
    for path, text in zip(paths, texts, strict=True):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return paths


def plot_schedules(
    cfg: dict, out_stem: str | Path, entropy: dict[str, pd.DataFrame] | None = None
) -> list[Path]:
    """Fig. 2: (a) per-position entropy bound log2 N − I(t) (+ measured: `entropy` maps a schedule
    to its `vcq.runfiles.read_entropy_csv` frame), (b) K_t."""
    plt = pyplot()
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    from vcq.config import k_sizes_for

    n = cfg["report"]["n_images"]
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    fig.suptitle(
        f"{cfg.get('experiment', '')}: per-position entropy budget and codebook size, "
        f"N = {n:,} images, L = {cfg['tokenizer']['num_tokens']} tokens"
    )
    measured = False
    for name in schedule_names(cfg):
        k_sizes = k_sizes_for(cfg, name)
        budget = np.maximum(schedules.remaining_budget(k_sizes, n)[:-1], 0.0)
        (line,) = ax_a.plot(np.minimum(np.log2(k_sizes), budget)[:17], label=f"{name} (theory)")
        ent = (entropy or {}).get(name)
        if ent is not None:
            measured = True
            ax_a.plot(
                ent["t"][:17],
                ent["cond_entropy_bits"][:17],
                "--",
                color=line.get_color(),
                label=f"{name} (measured H)",
            )
        ax_b.plot(k_sizes, label=name)
    ax_a.axhline(0, color="grey", lw=0.8)
    ax_a.set(
        xlabel="position t",
        ylabel="bits",
        title="(a) H(x_t | x_<t): ideal min(log2 K_t, log2 N − I(t))"
        + (" and measured" if measured else "")
        + "\nI(t) = sum of log2 K_s over s < t: the bits the first t tokens can carry",
    )
    ax_b.set(xlabel="position t", ylabel="codebook size $K_t$", title="(b) schedules")
    # powers of two as plain numbers (2, 64, 16384), the units codebook sizes come in
    ax_b.set_yscale("log", base=2)
    ax_b.yaxis.set_major_locator(LogLocator(base=2, numticks=8))
    ax_b.yaxis.set_major_formatter(ScalarFormatter())
    ax_b.yaxis.set_minor_formatter(NullFormatter())
    for ax in (ax_a, ax_b):
        ax.legend(fontsize=8)
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


def plot_usage(recon: dict[str, dict], out_stem: str | Path, title: str = "") -> list[Path]:
    """Codebook usage per position from the eval_recon metrics of each schedule: (a) codes used
    vs K_t, (b) used / K_t."""
    plt = pyplot()

    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, record in recon.items():
        usage = pd.DataFrame(record["usage_per_position"])
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
    """A PNG grid of the first `per_row` samples of each class (first `rows` classes), one row per
    class labelled with its name, under `title`."""
    images, labels = samples.images, samples.labels
    if labels is None:
        picks = [np.arange(min(len(images), per_row * rows))]
        row_names = [""] * (-(-len(picks[0]) // per_row))
    else:
        classes = np.unique(labels)[:rows]
        picks = [np.nonzero(labels == c)[0][:per_row] for c in classes]
        row_names = [
            class_names[c] if class_names and c < len(class_names) else f"class {c}"
            for c in classes
        ]
    # one grid row per class (a class with fewer samples leaves white cells)
    grid = np.concatenate([image_grid(images[idx], per_row, fill=255) for idx in picks])
    h = images.shape[1]
    return _image_figure(
        grid, out_png, title, [(r + 0.5) * h for r in range(len(row_names))], row_names
    )


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
    columns = [class_names[labels[j]] if class_names else f"class {labels[j]}" for j in picks]
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


def merge_schedules(cfgs: list[dict]) -> dict:
    """One config holding the schedules of several (same L and image size), for reference tables."""
    merged = {
        **cfgs[0],
        "experiment": " + ".join(dict.fromkeys(c["experiment"] for c in cfgs)),
        "schedules": [s for c in cfgs for s in c["schedules"]],
    }
    for c in cfgs[1:]:
        if c["tokenizer"]["num_tokens"] != merged["tokenizer"]["num_tokens"] or cfg_image_size(
            c
        ) != cfg_image_size(merged):
            raise ValueError("reference configs must share tokenizer.num_tokens and image size")
    return merged


def schedule_names(cfg: dict) -> list[str]:
    """Names of the experiment's schedules, in config order."""
    return [s["name"] for s in cfg["schedules"]]


def cfg_image_size(cfg: dict) -> int:
    """Image side length used for BPP: the tokenizer's input resolution."""
    return int(cfg["tokenizer"]["model"]["image_size"])


def _json_value(path: str | None, key: str) -> float:
    return read_json(path).get(key, np.nan) if path and Path(path).exists() else np.nan
