"""Paper tables (1, 2, 4, 5, 6, 8/9) and schedule figures built from the config and the runs' metric files."""

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

MISSING_NOTE = "empty cell: input file not produced (step not run)"


def table1(datasets: list[dict], k: int, thresholds: list[int], imagenet_n: int = 1281167) -> pd.DataFrame:
    """Table 1: log2 N and t* per dataset, then the data thresholds N_m = K^(m-1)."""
    rows = [
        {"regime": d["name"], "N": int(d["n"]), "log2_N": round(math.log2(d["n"]), 1),
         "t_star": cliff_position(d["n"], k), "x_ImageNet": np.nan}
        for d in datasets
    ]
    for m in thresholds:
        n_m = int(k) ** (m - 1)
        rows.append({"regime": f"t*={m} threshold", "N": n_m, "log2_N": round(math.log2(n_m), 1),
                     "t_star": m, "x_ImageNet": round(n_m / imagenet_n, 4)})
    return pd.DataFrame(rows)


def table2(cfg: dict, entropy_jsons: dict[str, str] | None = None) -> pd.DataFrame:
    """Table 2: per schedule Kmin, Kmax, K̄, BPP, theoretical and (if measured) empirical t*."""
    from vcq.config import codebook_sizes_for, schedule

    n = cfg["report"]["n_images"]
    rows = []
    for name in schedule_names(cfg):
        s = schedule(cfg, name)
        sizes = codebook_sizes_for(cfg, name)
        rows.append({
            "schedule": name, "k_min": int(sizes.min()), "k_max": int(sizes.max()),
            "k_mean": round(schedules.mean_codebook_size(sizes)),
            "bpp": round(schedules.bits_per_pixel(sizes, cfg_image_size(cfg)), 3),
            "t_star_theory": schedules.cliff_position_vcq(sizes, n),
            "t_star_measured": _json_value((entropy_jsons or {}).get(name), "t_star_measured"),
        })
    return pd.DataFrame(rows)


def table2_notes(cfg: dict, threshold_bits: float | None, paper_t2: dict | None = None,
                 fig2a_bits: float | None = None) -> list[str]:
    """Table 2 footnotes: how t* is defined, and each schedule whose printed t* contradicts Eq. 2.

    A printed t* below Eq. 2's t*_vcq is impossible for the full set: the first t tokens have at
    most prod K_s = 2^I(t) distinct prefixes, fewer than N, so x_t cannot be determined by them.
    """
    from vcq.config import codebook_sizes_for

    n = cfg["report"]["n_images"]
    notes = [f"t_star_theory: Eq. 2, the first t with sum_(s<t) log2 K_s >= log2 N, N = {n:,}"]
    if threshold_bits is not None:
        notes.append(f"t_star_measured: the first t from which the measured H(x_s | x_<s) stays below "
                     f"{threshold_bits:g} bits for every s >= t (entropy.threshold_bits)")
    for name in schedule_names(cfg):
        printed = (paper_t2 or {}).get(name, {}).get("t_star")
        sizes = codebook_sizes_for(cfg, name)
        theory = schedules.cliff_position_vcq(sizes, n)
        if printed is None or printed >= theory:
            continue
        bits = schedules.cumulative_information(sizes)[printed]
        note = (f"{name}: the paper's t* ~{printed} contradicts Eq. 2: the first {printed} tokens have at "
                f"most 2^{bits:.1f} distinct prefixes, fewer than N = {n:,} (Eq. 2: t* = {theory}")
        if fig2a_bits is not None:
            small = round(2 ** fig2a_bits)
            note += (f"; {schedules.cliff_position_vcq(sizes, small)} even at Fig. 2a's "
                     f"~{fig2a_bits:g}-bit budget, N = {small:,}")
        notes.append(note + ")")
    return notes


def best_preset(gen_jsons: list[str], guided: bool) -> dict | None:
    """The generation-metrics record with the lowest FID among guided (or unguided) presets."""
    records = [read_json(p) for p in gen_jsons if Path(p).exists()]
    records = [r for r in records if (r.get("preset", {}).get("guidance", "none") != "none") == guided]
    return min(records, key=lambda r: r["fid"]) if records else None


def table4(names: list[str], recon: dict[str, str], gen: dict[str, list[str]],
           sizes: dict[str, np.ndarray], image_size: int = 256) -> pd.DataFrame:
    """Table 4 analogue: K̄, BPP, PSNR, rFD, best guided gFD (with preset) and unguided gFD."""
    rows, label = [], "FID"
    for name in names:
        rec = read_json(recon[name]) if name in recon and Path(recon[name]).exists() else {}
        best = best_preset(gen.get(name, []), guided=True)
        plain = best_preset(gen.get(name, []), guided=False)
        label = next((r["fd_label"] for r in (rec, best, plain) if r and "fd_label" in r), label)
        rows.append({
            "schedule": name, "k_mean": round(schedules.mean_codebook_size(sizes[name])),
            "bpp": round(schedules.bits_per_pixel(sizes[name], image_size), 3),
            "psnr": rec.get("psnr", np.nan), "r": rec.get("rfid", np.nan),
            "g": best["fid"] if best else np.nan,
            "best_preset": best["preset"].get("name", "") if best else "",
            "g_nocfg": plain["fid"] if plain else np.nan,
        })
    df = pd.DataFrame(rows)
    return df.rename(columns={"r": f"r{label}", "g": f"g{label}", "g_nocfg": f"g{label} w/o CFG"})


TABLE5_METRICS = {"rfid": "r", "psnr": "psnr", "gfid": "g", "gfid_nocfg": "g_nocfg", "is": "is",
                  "precision": "precision", "recall": "recall"}


def table5(rows: list[dict], paper: dict | None = None) -> pd.DataFrame:
    """Table 5 (scaling): per Tok-AR row (`report.scaling`) the run's recon and best generation metrics.

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
        out.append({
            "row": spec["row"], "experiment": cfg["experiment"], "ar_model": cfg["ar"]["model"]["name"],
            "r": rec.get("rfid", np.nan), "psnr": rec.get("psnr", np.nan),
            "g": best.get("fid", np.nan), "g_nocfg": plain["fid"] if plain else np.nan,
            "is": best.get("is_mean", np.nan), "precision": best.get("precision", np.nan),
            "recall": best.get("recall", np.nan), "best_preset": best.get("preset", {}).get("name", ""),
        })
    df = pd.DataFrame(out, columns=["row", "experiment", "ar_model", *TABLE5_METRICS.values(), "best_preset"])
    if paper is not None:
        for key, col in TABLE5_METRICS.items():
            values = [paper.get(r, {}).get(key, np.nan) for r in df["row"]]
            df.insert(df.columns.get_loc(col) + 1, f"{col} (paper)", values)
    names = {"r": f"r{label}", "g": f"g{label}", "g_nocfg": f"g{label} w/o CFG"}
    return df.rename(columns=names | {f"{k} (paper)": f"{v} (paper)" for k, v in names.items()})


def table6(probe: dict[str, str]) -> pd.DataFrame:
    """Table 6: linear-probe top-1/top-5 per schedule and prefix length k."""
    rows = [{"schedule": name, "features": "codes", **r} for name, path in probe.items() if Path(path).exists()
            for r in read_json(path)["rows"]]
    return pd.DataFrame(rows, columns=["schedule", "features", "k", "top1", "top5"])


def add_probe_paper_columns(df: pd.DataFrame, paper: dict) -> pd.DataFrame:
    """Table 6 with `top1 (paper)`/`top5 (paper)` from `paper[schedule]["k<k>"]`."""
    out = df.copy()
    for col in ("top1", "top5"):
        values = [paper.get(s, {}).get(f"k{int(k)}", {}).get(col, np.nan) if f == "codes" else np.nan
                  for s, f, k in zip(out["schedule"], out.get("features", ["codes"] * len(out)), out["k"])]
        out.insert(out.columns.get_loc(col) + 1, f"{col} (paper)", values)
    return out


def table_guidance(names: list[str], gen: dict[str, list[str]]) -> pd.DataFrame:
    """Tables 8/9: per schedule the best FID of each guidance strategy (vanilla vs codebook-aware readings)."""
    from vcq.sampling import STRATEGIES, guidance_strategy

    rows = []
    for name in names:
        records = [read_json(p) for p in gen.get(name, []) if Path(p).exists()]
        row = {"schedule": name}
        for g in STRATEGIES:
            fids = [r["fid"] for r in records if guidance_strategy(r.get("preset", {})) == g]
            row[g] = min(fids) if fids else np.nan
        rows.append(row)
    df = pd.DataFrame(rows, columns=["schedule", *STRATEGIES])
    return df.dropna(axis=1, how="all")  # a strategy no preset uses is not a missing result


def add_paper_columns(df: pd.DataFrame, paper: dict, columns: dict[str, str]) -> pd.DataFrame:
    """Insert a `<col> (paper)` column after each column, from `paper[schedule][paper_key]`."""
    out = df.copy()
    for col, key in columns.items():
        values = [paper.get(s, {}).get(key, np.nan) for s in out["schedule"]]
        out.insert(out.columns.get_loc(col) + 1, f"{col} (paper)", values)
    return out


def footnotes(df: pd.DataFrame) -> list[str]:
    """A footnote for every column that has empty cells."""
    return [f"{c}: {MISSING_NOTE}" for c in df.columns if df[c].isna().any() and not c.endswith("(paper)")]


def write_table(df: pd.DataFrame, stem: str | Path, notes: list[str] | None = None) -> list[Path]:
    """Write `df` as `<stem>.csv`, `.md` and `.tex` atomically; notes go below the md/tex table."""
    stem, notes = Path(stem), notes if notes is not None else footnotes(df)
    paths = [stem.with_suffix(s) for s in (".csv", ".md", ".tex")]
    texts = [
        df.to_csv(index=False),
        df.astype(object).where(df.notna(), "").to_markdown(index=False) + "".join(f"\n\n{n}" for n in notes) + "\n",
        df.to_latex(index=False, na_rep="", float_format="%.3g")
        + "".join(f"% {n}\n" for n in notes),
    ]
    for path, text in zip(paths, texts):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return paths


def plot_schedules(cfg: dict, out_stem: str | Path, entropy_csvs: dict[str, str] | None = None) -> list[Path]:
    """Fig. 2: (a) per-position entropy bound from the budget log2 N − I(t) (+ measured), (b) K_t."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from vcq.config import codebook_sizes_for

    n = cfg["report"]["n_images"]
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    measured = False
    for name in schedule_names(cfg):
        sizes = codebook_sizes_for(cfg, name)
        budget = np.maximum(schedules.remaining_budget(sizes, n)[:-1], 0.0)
        line, = ax_a.plot(np.minimum(np.log2(sizes), budget)[:17], label=f"{name} (theory)")
        csv = (entropy_csvs or {}).get(name)
        if csv and Path(csv).exists():
            ent, measured = pd.read_csv(csv), True
            ax_a.plot(ent["t"][:17], ent["cond_entropy_bits"][:17], "--", color=line.get_color(),
                      label=f"{name} (measured H)")
        ax_b.plot(sizes, label=name)
    ax_a.axhline(0, color="grey", lw=0.8)
    ax_a.set(xlabel="position t", ylabel="bits",
             title="(a) H(x_t | x_<t): ideal min(log2 K_t, log2 N − I(t))" + (" and measured" if measured else ""))
    ax_b.set(xlabel="position t", ylabel="codebook size $K_t$", yscale="log", title="(b) schedules")
    for ax in (ax_a, ax_b):
        ax.legend(fontsize=8)
    return _save(fig, out_stem)


def plot_lines(series: dict[str, str], x: str, ys: list[str], out_stem: str | Path,
               xlabel: str, ylabel: str, log_y: bool = False) -> list[Path]:
    """One line per (file, column): per-position AR loss from CSVs or training curves from JSONL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name, path in series.items():
        if not Path(path).exists():
            continue
        df = pd.read_json(path, lines=True) if str(path).endswith(".jsonl") else pd.read_csv(path)
        for y in ys:
            if y in df:
                rows = df[[x, y]].dropna()
                ax.plot(rows[x], rows[y], label=f"{name} {y}")
    ax.set(xlabel=xlabel, ylabel=ylabel, yscale="log" if log_y else "linear")
    ax.legend(fontsize=8)
    return _save(fig, out_stem)


def plot_usage(recon_jsons: dict[str, str], out_stem: str | Path) -> list[Path]:
    """Codebook usage per position from eval_recon JSONs: (a) codes used vs K_t, (b) used / K_t."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, path in recon_jsons.items():
        usage = pd.DataFrame(read_json(path)["usage_per_position"])
        line, = ax_a.plot(usage["t"], usage["used"], label=f"{name} used")
        ax_a.plot(usage["t"], usage["k_t"], ":", color=line.get_color(), label=f"{name} $K_t$")
        ax_b.plot(usage["t"], usage["utilization"], label=name)
    ax_a.set(xlabel="position t", ylabel="codes", yscale="log", title="(a) codes used on val vs available")
    ax_b.set(xlabel="position t", ylabel="used / $K_t$", ylim=(0, 1.05), title="(b) codebook utilisation")
    for ax in (ax_a, ax_b):
        ax.legend(fontsize=7)
    return _save(fig, out_stem)


def sample_grid(npz_path: str | Path, out_png: str | Path, per_row: int = 8, rows: int = 8) -> Path:
    """A PNG grid of the first `per_row` samples of each class (first `rows` classes)."""
    from PIL import Image

    data = np.load(npz_path)
    images, labels = data["arr_0"], data["labels"] if "labels" in data else None
    if labels is None:
        picks = np.arange(min(len(images), per_row * rows))
    else:
        picks = np.concatenate([np.nonzero(labels == c)[0][:per_row] for c in np.unique(labels)[:rows]])
    n_rows = -(-len(picks) // per_row)
    h, w = images.shape[1:3]
    grid = np.zeros((n_rows * h, per_row * w, 3), dtype=np.uint8)
    for i, j in enumerate(picks):
        r, c = divmod(i, per_row)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[j]
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return out_png


def _save(fig, out_stem: str | Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = [Path(out_stem).with_suffix(s) for s in (".png", ".pdf")]
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=150)
    plt.close(fig)
    return paths


def merge_schedules(cfgs: list[dict]) -> dict:
    """One config holding the schedules of several (same L and image size), for reference tables."""
    merged = {**cfgs[0], "schedules": [s for c in cfgs for s in c["schedules"]]}
    for c in cfgs[1:]:
        if c["tokenizer"]["num_tokens"] != merged["tokenizer"]["num_tokens"] or cfg_image_size(c) != cfg_image_size(merged):
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
