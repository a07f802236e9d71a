"""The paper's tables by registry: each table is a builder plus one `TableSpec` in `TABLES`.

A builder turns the config and the runs' records (`TableInputs`, read once) into a `Table` whose
columns are metric ids (`METRICS`); `render` adds the paper's digits beside the metrics named in
the spec and applies the display labels, and `write_table` writes CSV, Markdown, LaTeX and the
caption of the HTML report. The workflow (`workflow/rules/common.smk`, `report.smk`),
`pipeline_steps/make_tables.py` and `summary.md` all follow `TABLES` (docs/EXTENDING.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from vcq import schedules
from vcq.entropy import cliff_position
from vcq.io import atomic_path
from vcq.metrics.records import (
    EntropySummary,
    GenerationMetrics,
    ProbeMetrics,
    ReconstructionMetrics,
    read_record,
)
from vcq.report import MISSING_NOTE, cfg_image_size, merge_schedules, schedule_names


@dataclass(frozen=True)
class Metric:
    """A column's display label; `{fd}` stands for the run's feature-distance label ("FID" with
    Inception, "FD (demo features)" with the demo network)."""

    label: str


# Every column id with a label other than itself. Builders use ids, never labels.
METRICS: dict[str, Metric] = {
    "psnr": Metric("PSNR (dB)"),
    "psnr_baseline": Metric("PSNR mean-colour baseline (dB)"),
    "rfd": Metric("r{fd}"),
    "gfd": Metric("g{fd}"),
    "gfd_nocfg": Metric("g{fd} w/o CFG"),
    "class_acc": Metric("class accuracy of samples (demo classifier)"),
    "class_acc_nocfg": Metric("class accuracy of samples (demo classifier) w/o CFG"),
    "class_acc_real": Metric("class accuracy of real val images (demo classifier)"),
    "usage": Metric("Usage (%)"),
    "is": Metric("IS"),
    "params_m": Metric("params (M)"),
    "params_diff_pct": Metric("vs paper (%)"),
}


def label(metric: str, fd_label: str = "FID", extra: dict[str, str] | None = None) -> str:
    """The display label of column `metric` (its id where nothing else is registered)."""
    if extra and metric in extra:
        return extra[metric]
    m = METRICS.get(metric)
    return m.label.format(fd=fd_label) if m else metric


@dataclass
class Table:
    """A built table: columns keyed by metric id, its footnotes, the run's FD label, and labels
    of columns a builder names at run time (e.g. one per guidance strategy)."""

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    fd_label: str = "FID"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class TableInputs:
    """What builders read: the config (report.n_images filled) and the runs' records, each read
    once by make_tables. `scaling` holds, per Table 5 row, the row's config and records."""

    cfg: dict
    classes: list[str] | None = None
    n_from_manifest: bool = False  # report.n_images came from the data manifest's train count
    entropy: dict[str, EntropySummary] = field(default_factory=dict)
    recon: dict[str, ReconstructionMetrics] = field(default_factory=dict)
    gen: dict[str, list[GenerationMetrics]] = field(default_factory=dict)
    probe: dict[str, ProbeMetrics] = field(default_factory=dict)
    position_loss: dict[str, pd.DataFrame] = field(default_factory=dict)
    scaling: list[tuple[dict, dict, ReconstructionMetrics | None, list[GenerationMetrics]]] = field(
        default_factory=list
    )

    @cached_property
    def paper(self) -> dict:
        """The paper's printed numbers (`report.paper_numbers`)."""
        return yaml.safe_load(Path(self.cfg["report"]["paper_numbers"]).read_text())

    @property
    def compare(self) -> bool:
        """Whether run tables get the paper's digits beside them (`report.paper_comparison`)."""
        return bool(self.cfg["report"]["paper_comparison"])


def _default_paper_row(section: dict, row: dict, row_key: str) -> dict:
    return section.get(row[row_key], {})


@dataclass(frozen=True)
class TableSpec:
    """One registered table.

    `group` says which step builds it: "theory" (the config alone, rule `theory`), "run" (the
    experiment's records, rule `tables`) or "scaling" (Table 5, records of other experiments,
    rule `table5`). `inputs` names the records a run table reads (`INPUTS` keys): the workflow
    gives exactly those to `make_tables`. With `paper` (a section of paper_numbers.yaml), each
    column in `paper_columns` (metric id -> key of the paper's row; None: every column the
    paper's row has) gets a `(paper)` column beside it, where `report.paper_comparison` is on or
    `always_paper` is set; `paper_row` finds the paper's row of a table row.
    """

    name: str
    title: str
    build: Callable[[TableInputs], Table]
    group: str = "run"
    inputs: tuple[str, ...] = ()
    paper: str | None = None
    paper_columns: dict[str, str] | None = None
    always_paper: bool = False
    row_key: str = "schedule"
    paper_row: Callable[[dict, dict, str], dict] = _default_paper_row
    missing_notes: bool = True  # a footnote for every column with empty cells
    summary: Callable[[Table], list[str]] | None = None
    enabled: Callable[[dict], bool] = lambda cfg: True


# The records run tables can read: make_tables flag (--KIND) and its help.
INPUTS = {
    "entropy": "results/{exp}/entropy/<schedule>.json (measure_entropy)",
    "recon": "results/{exp}/recon/<schedule>.json (eval_recon)",
    "gen": "results/{exp}/gen/<schedule>/<preset>.json (eval_fid)",
    "probe": "results/{exp}/probe/<schedule>.json (linear_probe)",
    "position_loss": "results/{exp}/ar/<schedule>_position_loss.csv (train_ar)",
}

TABLES: dict[str, TableSpec] = {}


def register_table(spec: TableSpec) -> TableSpec:
    """Add a table to the registry (a name already registered is an error)."""
    if spec.name in TABLES:
        raise ValueError(f"table {spec.name!r} is registered already")
    if spec.group not in ("theory", "run", "scaling"):
        raise ValueError(f"table {spec.name!r}: unknown group {spec.group!r}")
    unknown = set(spec.inputs) - set(INPUTS)
    if unknown:
        raise ValueError(f"table {spec.name!r}: unknown inputs {sorted(unknown)} (have {INPUTS})")
    TABLES[spec.name] = spec
    return spec


def tables_of(group: str, cfg: dict) -> list[TableSpec]:
    """The registered tables of `group` that `cfg` asks for, in registration order (the config's
    `plugins`, imported when it was loaded, register their own)."""
    return [s for s in TABLES.values() if s.group == group and s.enabled(cfg)]


# summary.md's section on the AR models reads the per-position losses beside the run tables
SUMMARY_INPUTS = ("position_loss",)


def inputs_of(group: str, cfg: dict) -> list[str]:
    """The record kinds the tables of `group` read (with summary.md's for `run`), in `INPUTS`
    order."""
    wanted = {k for s in tables_of(group, cfg) for k in s.inputs}
    wanted |= set(SUMMARY_INPUTS) if group == "run" else set()
    return [k for k in INPUTS if k in wanted]


# --- the writer -----------------------------------------------------------------------------


def render(table: Table, spec: TableSpec, inputs: TableInputs) -> pd.DataFrame:
    """The table as printed: paper columns beside their metrics, then display labels."""
    df = table.frame.copy()
    if spec.paper and (spec.always_paper or inputs.compare):
        section = inputs.paper.get(spec.paper, {})
        rows = [spec.paper_row(section, r, spec.row_key) for r in df.to_dict("records")]
        columns = spec.paper_columns
        if columns is None:
            columns = {c: c for c in df.columns if c != spec.row_key}
        for col, key in columns.items():
            values = [r.get(key, np.nan) for r in rows]
            # beside its metric; at the end where the table has none (a printed t* beside a
            # table of the config alone)
            at = df.columns.get_loc(col) + 1 if col in df else len(df.columns)
            df.insert(at, f"{col} (paper)", values)
    ids = [*table.frame.columns, *(spec.paper_columns or {})]
    names = {c: label(c, table.fd_label, table.labels) for c in ids}
    return df.rename(
        columns={**names, **{f"{c} (paper)": f"{n} (paper)" for c, n in names.items()}}
    )


def footnotes(df: pd.DataFrame) -> list[str]:
    """A footnote for every column that has empty cells."""
    return [
        f"{c}: {MISSING_NOTE}"
        for c in df.columns
        if df[c].isna().any() and not c.endswith("(paper)")
    ]


def table_texts(table: Table, spec: TableSpec, inputs: TableInputs) -> dict[str, str]:
    """{extension: text} of a table: csv, md and tex (notes below), and rst, the HTML report's
    caption (title and notes)."""
    df = render(table, spec, inputs)
    notes = (footnotes(df) if spec.missing_notes else []) + table.notes
    return {
        "csv": df.to_csv(index=False),
        # four significant digits for reading; the CSV keeps every digit
        "md": df.astype(object).where(df.notna(), "").to_markdown(index=False, floatfmt=".4g")
        + "".join(f"\n\n{n}" for n in notes)
        + "\n",
        "tex": df.to_latex(index=False, na_rep="", float_format="%.3g")
        + "".join(f"% {n}\n" for n in notes),
        # Snakemake renders captions with Jinja, then as reStructuredText: raw, literal notes
        "rst": "{% raw %}\n"
        + f"**{spec.name}: {spec.title}**\n\n"
        + ("::\n\n" + "".join(f"    {n}\n" for n in notes) if notes else "")
        + "{% endraw %}\n",
    }


TABLE_EXTENSIONS = ("md", "csv", "tex", "rst")


def write_table(texts: dict[str, str], stem: str | Path) -> list[Path]:
    """Write `table_texts` as `<stem>.<ext>`, each atomically."""
    paths = []
    for ext, text in texts.items():
        path = Path(stem).with_suffix(f".{ext}")
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        paths.append(path)
    return paths


def summary(inputs: TableInputs, tables: dict[str, Table]) -> str:
    """Markdown with the key figures of every run table (results/<exp>/summary.md), each
    registered table's section in registry order, then the AR models' losses."""
    exp = inputs.cfg["experiment"]
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
    for name, table in tables.items():
        spec = TABLES[name]
        if spec.summary is not None and len(table.frame):
            out += [f"## {spec.title} ({name})", "", *spec.summary(table), ""]
    if inputs.position_loss:
        out += ["## AR models (position_loss)", ""]
        out += [
            f"- **{n}**: val loss {df['val_loss'].mean():.3f} nats per token "
            f"(mean over {len(df)} positions), "
            f"train loss {df['train_loss'].mean():.3f} (EMA over training steps)"
            for n, df in inputs.position_loss.items()
        ]
        out.append("")
    out += [
        "What made each table and figure (the config's hash, the hashes of the files it was "
        "made from, the code version): `provenance.json` beside this file.",
        "",
    ]
    return "\n".join(out) + "\n"


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(x, digits: int = 2, sign: bool = False) -> str:
    if _isnan(x):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _pct(x) -> str:
    return "n/a" if _isnan(x) else f"{100 * x:.0f}%"


def _value(x) -> float:
    return np.nan if x is None else x


# --- Table 1 --------------------------------------------------------------------------------

IMAGENET_N = 1281167


def table1(inputs: TableInputs) -> Table:
    """Table 1: log2 N and t* per dataset, then the data thresholds N_m = K^(m-1)."""
    rep = inputs.cfg["report"]
    k = int(rep["k"])
    rows = [
        {
            "regime": d["name"],
            "N": int(d["n"]),
            "log2_N": round(math.log2(d["n"]), 1),
            "t_star": cliff_position(d["n"], k),
            "x_ImageNet": np.nan,
        }
        for d in rep["datasets"]
    ]
    for m in rep["thresholds"]:
        n_m = k ** (m - 1)
        rows.append(
            {
                "regime": f"t*={m} threshold",
                "N": n_m,
                "log2_N": round(math.log2(n_m), 1),
                "t_star": m,
                "x_ImageNet": round(n_m / IMAGENET_N, 4),
            }
        )
    notes = [
        f"t_star: Eq. 2 with a constant codebook K = {k:,} (the paper's), the first t with "
        "t * log2 K >= log2 N",
        f"x_ImageNet: N as a multiple of ImageNet-1K's {IMAGENET_N:,} training images",
    ]
    return Table(pd.DataFrame(rows), notes)


# --- Table 2 --------------------------------------------------------------------------------


def table2_frame(cfg: dict, entropy: dict[str, EntropySummary] | None = None) -> pd.DataFrame:
    """Per schedule Kmin, Kmax, K̄, BPP, theoretical and (if measured) empirical t*."""
    from vcq.config import k_sizes_for

    n = cfg["report"]["n_images"]
    rows = []
    for name in schedule_names(cfg):
        k_sizes = k_sizes_for(cfg, name)
        measured = (entropy or {}).get(name)
        rows.append(
            {
                "schedule": name,
                "k_min": int(k_sizes.min()),
                "k_max": int(k_sizes.max()),
                "k_mean": round(schedules.mean_codebook_size(k_sizes)),
                "bpp": round(schedules.bits_per_pixel(k_sizes, cfg_image_size(cfg)), 3),
                "t_star_theory": schedules.cliff_position_vcq(k_sizes, n),
                "t_star_measured": measured.t_star_measured if measured else np.nan,
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


TABLE2_PAPER = {"k_mean": "k_mean", "bpp": "bpp", "t_star_measured": "t_star"}


def _n_source(inputs: TableInputs) -> str:
    source = "the data manifest's train count" if inputs.n_from_manifest else "report.n_images"
    return f"N = {inputs.cfg['report']['n_images']:,} training images ({source})"


def table2_theory(inputs: TableInputs) -> Table:
    """Table 2 from the config alone (no measured t*)."""
    cfg = inputs.cfg
    frame = table2_frame(cfg).drop(columns="t_star_measured")
    notes = [*table2_notes(cfg, None), _n_source(inputs)]
    return Table(frame, notes)


def table2_reference(inputs: TableInputs) -> Table:
    """Table 2 of the reference configs (the paper's schedules) with the paper's digits."""
    from vcq.config import load_config

    reference = inputs.cfg["report"]["reference_configs"]
    ref = merge_schedules([load_config(c) for c in reference])
    # nothing is measured for a reference config; the paper's printed t* goes last
    frame = table2_frame(ref).drop(columns="t_star_measured")
    paper = inputs.paper
    notes = [
        f"schedules of {', '.join(reference)}; t_star_measured (paper) is the paper's printed t*",
        *table2_notes(ref, None, paper["table2"], paper.get("fig2a_budget_bits")),
    ]
    return Table(frame, notes)


def table2(inputs: TableInputs) -> Table:
    """Table 2 with the measured cliff of each schedule."""
    cfg = inputs.cfg
    paper = inputs.paper if inputs.compare else None
    notes = table2_notes(
        cfg,
        cfg["entropy"]["threshold_bits"],
        paper and paper["table2"],
        paper and paper.get("fig2a_budget_bits"),
    )
    return Table(table2_frame(cfg, inputs.entropy), [*notes, _n_source(inputs)])


def _table2_summary(table: Table) -> list[str]:
    return [
        f"- **{r['schedule']}**: K̄ {r['k_mean']}, {r['bpp']} bits per pixel, "
        f"cliff t* {_fmt(r['t_star_measured'], 0)} "
        f"measured vs {r['t_star_theory']} from Eq. 2"
        for r in table.frame.to_dict("records")
    ]


# --- Table 3 --------------------------------------------------------------------------------


def _model_rows(cfg: dict, num_classes: int) -> list[dict]:
    """Parameter counts of a config's tokenizer and AR model at its largest codebook."""
    import torch

    from vcq.ar import ARConfig, count_params
    from vcq.config import k_sizes_for, tokenizer_section
    from vcq.tokenizer import build_tokenizer, parameter_breakdown

    name = max(cfg["schedules"], key=lambda s: s["k_max"])["name"]
    k_sizes = k_sizes_for(cfg, name)
    with torch.device("meta"):
        tok = parameter_breakdown(build_tokenizer(tokenizer_section(cfg, name), k_sizes))
    ar = count_params(
        ARConfig.from_dict(
            {
                **cfg["ar"]["model"],
                "vocab_size": int(k_sizes.max()),
                "seq_len": len(k_sizes),
                "num_classes": num_classes,
            }
        )
    )
    return [
        {
            "model": cfg[part]["model"]["name"],
            "part": part,
            "experiment": cfg["experiment"],
            "k_max": int(k_sizes.max()),
            "num_tokens": len(k_sizes),
            "params_m": round(counts["total"] / 1e6, 2),
        }
        for part, counts in (("tokenizer", tok), ("ar", ar))
    ]


def table3(inputs: TableInputs) -> Table:
    """Table 3: parameters of the experiment's models and of its reference and scaling configs'
    (the paper's), beside the paper's counts."""
    from vcq.config import load_config

    cfg, rep = inputs.cfg, inputs.cfg["report"]
    own_classes = len(inputs.classes) if inputs.classes else cfg["data"].get("num_classes", 1000)
    others = dict.fromkeys([*rep["reference_configs"], *(r["config"] for r in rep["scaling"])])
    rows = _model_rows(cfg, own_classes)
    for path in others:
        rows += _model_rows(load_config(path), 1000)
    frame = pd.DataFrame(rows).drop_duplicates(subset=["model", "part", "k_max", "num_tokens"])
    paper = inputs.paper.get("table3", {})
    frame["params_diff_pct"] = [
        round(100 * (r["params_m"] * 1e6 / paper[r["model"]] - 1), 1)
        if r["model"] in paper
        else np.nan
        for r in frame.to_dict("records")
    ]
    notes = [
        "params (M): parameters counted on the models as built from each config (the tokenizer "
        "with its codebook, at the schedule with the largest K_max; the AR model with "
        f"vocabulary K_max and {own_classes} classes for {cfg['experiment']}, 1,000 for the "
        "ImageNet configs)",
        "vs paper: against the paper's Table 3 (paper_numbers table3, rounded to 1M there). AR-B "
        "in the Large group has vocabulary 11,264, not 16,384: 103.0M, 10.4% below the 115M "
        "the paper prints for AR-B (docs/fidelity.md)",
    ]
    return Table(frame.reset_index(drop=True), notes)


def _table3_paper_row(section: dict, row: dict, row_key: str) -> dict:
    count = section.get(row["model"])
    return {"params_m": count / 1e6} if count else {}


# --- Table 4 --------------------------------------------------------------------------------


def best_preset(records: list[GenerationMetrics], guided: bool) -> GenerationMetrics | None:
    """The record with the lowest FD among guided (or unguided) presets."""
    records = [r for r in records if r.guided == guided]
    return min(records, key=lambda r: r.fd) if records else None


def _fd_label(*records) -> str:
    return next((r.fd_label for r in records if r is not None and r.fd_label), "FID")


def table4(inputs: TableInputs) -> Table:
    """Table 4 analogue: K̄, BPP, PSNR (and its mean-colour baseline), rFD, best guided gFD (with
    preset) and unguided gFD; with demo features also the demo classifier's accuracy on samples."""
    from vcq.config import k_sizes_for

    cfg, rows, fd = inputs.cfg, [], "FID"
    for name in schedule_names(cfg):
        k_sizes = k_sizes_for(cfg, name)
        rec = inputs.recon.get(name)
        gens = inputs.gen.get(name, [])
        best, plain = best_preset(gens, guided=True), best_preset(gens, guided=False)
        fd = _fd_label(rec, best, plain) if (rec or best or plain) else fd
        rows.append(
            {
                "schedule": name,
                "k_mean": round(schedules.mean_codebook_size(k_sizes)),
                "bpp": round(schedules.bits_per_pixel(k_sizes, cfg_image_size(cfg)), 3),
                "psnr": rec.psnr if rec else np.nan,
                "psnr_baseline": rec.psnr_mean_colour_baseline if rec else np.nan,
                "rfd": _value(rec.rfd) if rec else np.nan,
                "gfd": best.fd if best else np.nan,
                "best_preset": best.preset.get("name", "") if best else "",
                "gfd_nocfg": plain.fd if plain else np.nan,
                "class_acc": _value(best.class_accuracy) if best else np.nan,
                "class_acc_nocfg": _value(plain.class_accuracy) if plain else np.nan,
                "class_acc_real": _value((best or plain).class_accuracy_reference)
                if (best or plain)
                else np.nan,
            }
        )
    df = pd.DataFrame(rows)
    # Only the demo feature network is a classifier of the data set's classes.
    acc = ("class_acc", "class_acc_nocfg", "class_acc_real")
    df = df.drop(columns=[c for c in acc if df[c].isna().all()])
    notes = {
        "psnr_baseline": f"{label('psnr_baseline')}: every val image replaced by its own mean "
        "colour, i.e. a tokenizer that keeps nothing but the colour",
        "best_preset": f"{label('gfd', fd)}: the best (lowest) over the guided presets; "
        "best_preset names it",
        "class_acc": f"{label('class_acc')}: share of the best guided preset's samples that "
        "the demo feature network (a classifier trained on the demo train images) assigns to "
        "the class they were conditioned on; chance is 1 / number of classes. A demo metric, "
        "not one of the paper's",
        "class_acc_nocfg": f"{label('class_acc_nocfg')}: the same for the unguided samples",
        "class_acc_real": f"{label('class_acc_real')}: the same classifier on the real val "
        "images (its ceiling)",
    }
    return Table(df, [text for col, text in notes.items() if col in df.columns], fd)


def _table4_summary(table: Table) -> list[str]:
    out, g = [], label("gfd", table.fd_label)
    for row in table.frame.to_dict("records"):
        line = f"- **{row['schedule']}**: PSNR {_fmt(row['psnr'])} dB"
        if not _isnan(row["psnr_baseline"]):
            line += (
                f" vs {_fmt(row['psnr_baseline'])} dB for the mean-colour baseline "
                f"({_fmt(row['psnr'] - row['psnr_baseline'], sign=True)} dB)"
            )
        line += (
            f"; {g} {_fmt(row['gfd'])} ({row['best_preset'] or 'no guided preset'}), "
            f"w/o CFG {_fmt(row['gfd_nocfg'])}"
        )
        if "class_acc" in row:
            line += (
                f"; {label('class_acc')} {_pct(row['class_acc'])} with CFG, "
                f"{_pct(row.get('class_acc_nocfg'))} w/o CFG, "
                f"{_pct(row.get('class_acc_real'))} on real val images"
            )
        out.append(line)
    return out


# --- Table 5 --------------------------------------------------------------------------------

TABLE5_PAPER = {
    "params_m": "ar_params_m",
    "rfd": "rfid",
    "psnr": "psnr",
    "gfd": "gfid",
    "gfd_nocfg": "gfid_nocfg",
    "is": "is",
    "precision": "precision",
    "recall": "recall",
}


def table5(inputs: TableInputs) -> Table:
    """Table 5 (scaling): per Tok-AR row (`report.scaling`) its experiment's reconstruction and
    best generation metrics, then the paper's baselines (paper_numbers `table5_baselines`).

    gFID is the best guided preset (IS, precision, recall from that preset), gFID w/o CFG the
    best unguided one; Usage the share of the K_max codes the tokenizer uses on val.
    """
    from vcq.ar import ARConfig, count_params

    rows, fd = [], "FID"
    for spec, cfg, rec, gens in inputs.scaling:
        best, plain = best_preset(gens, guided=True), best_preset(gens, guided=False)
        if rec or best or plain:
            fd = _fd_label(rec, best, plain)
        k_max = max(int(s["k_max"]) for s in cfg["schedules"])
        ar = count_params(
            ARConfig.from_dict(
                {
                    **cfg["ar"]["model"],
                    "vocab_size": k_max,
                    "seq_len": cfg["tokenizer"]["num_tokens"],
                    "num_classes": 1000,
                }
            )
        )
        rows.append(
            {
                "row": spec["row"],
                "experiment": cfg["experiment"],
                "ar_model": cfg["ar"]["model"]["name"],
                "params_m": round(ar["total"] / 1e6, 1),
                "rfd": _value(rec.rfd) if rec else np.nan,
                "psnr": rec.psnr if rec else np.nan,
                "usage": round(100 * rec.codebook_usage, 1) if rec else np.nan,
                "gfd": best.fd if best else np.nan,
                "gfd_nocfg": plain.fd if plain else np.nan,
                "is": best.is_mean if best else np.nan,
                "precision": _value(best.precision) if best else np.nan,
                "recall": _value(best.recall) if best else np.nan,
                "best_preset": best.preset.get("name", "") if best else "",
            }
        )
    baselines = inputs.paper.get("table5_baselines", [])
    rows += [
        {
            "row": b["method"],
            "experiment": "(paper)",
            "ar_model": b.get("generator", ""),
            "params_m": b.get("params_m", np.nan),
            **{k: _value(b.get(v)) for k, v in TABLE5_PAPER.items() if k != "params_m"},
        }
        for b in baselines
    ]
    notes = [
        f"{label('gfd', fd)}: best guided preset of the row's config (IS, precision, recall of "
        f"that preset); {label('gfd_nocfg', fd)}: best unguided preset",
        f"{label('usage')}: share of the K_max codes used at any position on the val split "
        "(recon metrics `codebook_usage`)",
        "params (M): the AR model as built from the row's config (vocabulary K_max, 1,000 classes)",
        "rows with experiment (paper): the baselines the paper lists, its digits "
        "(paper_numbers table5_baselines); empty where the paper prints none",
    ]
    return Table(pd.DataFrame(rows).reindex(columns=_TABLE5_COLUMNS), notes, fd)


def scaling_rows(cfg: dict) -> list:
    """Per Table 5 row (`report.scaling`): (row, its config, recon record or None, generation
    records of its schedule's sampled presets); a file not yet written leaves its cells empty."""
    from vcq.config import load_config
    from vcq.paths import Layout
    from vcq.sampling import sampled_pairs

    rows = []
    for spec in cfg["report"]["scaling"]:
        row_cfg = load_config(spec["config"])
        layout, name = Layout.of(row_cfg), spec["schedule"]
        recon = Path(layout.recon(name))
        gens = [Path(layout.gen(s, p)) for s, p in sampled_pairs(row_cfg) if s == name]
        rows.append(
            (
                spec,
                row_cfg,
                read_record(recon, ReconstructionMetrics) if recon.exists() else None,
                [read_record(g, GenerationMetrics) for g in gens if g.exists()],
            )
        )
    return rows


_TABLE5_COLUMNS = [
    "row",
    "experiment",
    "ar_model",
    "params_m",
    "rfd",
    "psnr",
    "usage",
    "gfd",
    "gfd_nocfg",
    "is",
    "precision",
    "recall",
    "best_preset",
]


def _table5_paper_row(section: dict, row: dict, row_key: str) -> dict:
    return section.get(row["row"], {}) if row["experiment"] != "(paper)" else {}


# --- Table 6 --------------------------------------------------------------------------------

TABLE6_NOTES = [
    "features codes: a linear classifier on the quantized code vectors of the first k tokens "
    "(standardised); prologue: on the k prologue tokens' code vectors",
    "top1, top5: val accuracy in % (linear probe, probe.epochs)",
]


def table6(inputs: TableInputs) -> Table:
    """Table 6: linear-probe top-1/top-5 per schedule and prefix length k."""
    rows = [
        {"schedule": name, "features": "codes", **r}
        for name, record in inputs.probe.items()
        for r in record.rows
    ]
    return Table(
        pd.DataFrame(rows, columns=["schedule", "features", "k", "top1", "top5"]),
        list(TABLE6_NOTES),
    )


def _table6_paper_row(section: dict, row: dict, row_key: str) -> dict:
    if row.get("features", "codes") != "codes":
        return {}
    return section.get(row["schedule"], {}).get(f"k{int(row['k'])}", {})


def _table6_summary(table: Table) -> list[str]:
    out = []
    for name, rows in table.frame.groupby("schedule", sort=False):
        parts = [
            ("" if r.get("features", "codes") == "codes" else f"{r['features']} tokens, ")
            + f"k = {'all' if _isnan(r['k']) else int(r['k'])}: top-1 {_fmt(r['top1'], 1)}%"
            for r in rows.to_dict("records")
        ]
        out.append(f"- **{name}**: " + ", ".join(parts))
    return out


# --- Tables 8/9 -----------------------------------------------------------------------------


def table8_9(inputs: TableInputs) -> Table:
    """Tables 8/9: per schedule the best gFD/gFID of each guidance strategy (vanilla vs the
    codebook-aware readings, `vcq.sampling.STRATEGIES`), and the footnotes.

    A cell of a strategy the config does not sample for that schedule is empty by design (e.g.
    codebook-aware CFG on a constant codebook), which the notes say, apart from cells whose step
    has not run.
    """
    from vcq.sampling import STRATEGIES, guidance_strategy, presets_for

    cfg = inputs.cfg
    names = schedule_names(cfg)
    configured = {n: {guidance_strategy(p) for p in presets_for(cfg["sampling"], n)} for n in names}
    rows, fd, by_design, missing = [], "FID", set(), set()
    for name in names:
        records = inputs.gen.get(name, [])
        fd = _fd_label(*records) if records else fd
        row = {"schedule": name}
        for g in STRATEGIES:
            fds = [r.fd for r in records if guidance_strategy(r.preset) == g]
            row[g] = min(fds) if fds else np.nan
            if not fds:
                (missing if g in configured[name] else by_design).add(g)
        rows.append(row)
    df = pd.DataFrame(rows, columns=["schedule", *STRATEGIES])
    used = [
        g for g in STRATEGIES if not df[g].isna().all() or any(g in c for c in configured.values())
    ]
    df = df[["schedule", *used]]
    metric = f"best g{fd}"
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
    return Table(df, notes, fd, {g: f"{g}: {metric}" for g in used})


def _table8_9_summary(table: Table) -> list[str]:
    out = []
    for r in table.frame.to_dict("records"):
        cells = [f"{c} {_fmt(v)}" for c, v in r.items() if c != "schedule" and not _isnan(v)]
        out.append(f"- **{r['schedule']}**: " + (", ".join(cells) if cells else "no guided preset"))
    return [*out, "", f"(best g{table.fd_label}, lower is better.)"]


# --- the registry ---------------------------------------------------------------------------

register_table(
    TableSpec(
        "table1", "Table 1: entropy cliff per dataset", table1, group="theory", missing_notes=False
    )
)
register_table(
    TableSpec(
        "table2_theory",
        "Table 2 from the config: codebook schedules and Eq. 2's cliff",
        table2_theory,
        group="theory",
        missing_notes=False,
    )
)
register_table(
    TableSpec(
        "table2_reference",
        "Table 2 of the paper's schedules, the paper's digits alongside",
        table2_reference,
        group="theory",
        paper="table2",
        paper_columns=TABLE2_PAPER,
        always_paper=True,
        missing_notes=False,
        enabled=lambda cfg: bool(cfg["report"]["reference_configs"]),
    )
)
register_table(
    TableSpec(
        "table3",
        "Table 3: parameter counts",
        table3,
        group="theory",
        paper="table3",
        paper_columns={"params_m": "params_m"},
        always_paper=True,
        paper_row=_table3_paper_row,
        missing_notes=False,
    )
)
register_table(
    TableSpec(
        "table4",
        "Reconstruction and generation",
        table4,
        inputs=("recon", "gen"),
        paper="table4",
        paper_columns={"psnr": "psnr", "rfd": "rfid", "gfd": "gfid", "gfd_nocfg": "gfid_nocfg"},
        summary=_table4_summary,
    )
)
register_table(
    TableSpec(
        "table2",
        "Entropy cliff",
        table2,
        inputs=("entropy",),
        paper="table2",
        paper_columns=TABLE2_PAPER,
        summary=_table2_summary,
    )
)
register_table(
    TableSpec(
        "table6",
        "Linear probe on the tokens",
        table6,
        inputs=("probe",),
        paper="table6",
        paper_columns={"top1": "top1", "top5": "top5"},
        paper_row=_table6_paper_row,
        summary=_table6_summary,
    )
)
register_table(
    TableSpec(
        "table8_9",
        "Guidance strategies",
        table8_9,
        inputs=("gen",),
        paper="table8_9",
        missing_notes=False,
        summary=_table8_9_summary,
    )
)
register_table(
    TableSpec(
        "table5",
        "Table 5: scaling (Tok-AR rows of report.scaling, the paper's baselines below)",
        table5,
        group="scaling",
        paper="table5",
        paper_columns=TABLE5_PAPER,
        always_paper=True,
        row_key="row",
        paper_row=_table5_paper_row,
        enabled=lambda cfg: bool(cfg["report"]["scaling"]),
    )
)
