"""Typed metric records, one schema per metric file (generation, reconstruction, linear probe,
entropy cliff): the steps write them with `write_record`, tables and figures read them once with
`read_record` (or `records_by_name`) and pass the records on.

A field is a metric id: tables key their columns by it (`vcq.report.tables.METRICS` gives the
display label). Fréchet distances are `fd`/`rfd`, whatever the feature network; `fd_label` says
which ("FID" with Inception, "FD (demo features)" with the demo network).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from vcq.io import StepError, write_json
from vcq.runfiles import by_name, read_metrics

R = TypeVar("R", bound="Record")


@dataclass(frozen=True)
class Record:
    """What every metric file carries: the schedule it was measured on."""

    RULE: ClassVar[str] = ""  # the workflow rule that writes the file
    WHAT: ClassVar[str] = ""  # how errors name the file

    schedule: str

    @property
    def key(self) -> Hashable:
        """What `records_by_name` matches against the config: the schedule."""
        return self.schedule


@dataclass(frozen=True)
class GenerationMetrics(Record):
    """`results/<exp>/gen/<schedule>/<preset>.json` (`eval_fid`); IS over ADM's splits."""

    RULE: ClassVar[str] = "eval_fid"
    WHAT: ClassVar[str] = "generation metrics file"

    preset: dict
    fd: float
    fd_label: str
    is_mean: float
    is_std: float
    is_split_size: int
    precision: float | None
    recall: float | None
    kid_mean: float | None
    n_samples: int
    # demo features only: the demo classifier's top-1 on the samples and on real val images
    class_accuracy: float | None = None
    class_accuracy_reference: float | None = None

    @property
    def key(self) -> Hashable:
        """(schedule, preset name)."""
        return self.schedule, self.preset.get("name")

    @property
    def guided(self) -> bool:
        """Whether the preset uses classifier-free guidance."""
        return self.preset.get("guidance", "none") != "none"


@dataclass(frozen=True)
class ReconstructionMetrics(Record):
    """`results/<exp>/recon/<schedule>.json` (`eval_recon`)."""

    RULE: ClassVar[str] = "eval_recon"
    WHAT: ClassVar[str] = "recon metrics file"

    psnr: float
    psnr_mean_colour_baseline: float
    rfd: float | None
    fd_label: str | None
    codebook_usage: float  # share of the K_max codes used at some position on val (Table 5)
    usage_per_position: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class ProbeMetrics(Record):
    """`results/<exp>/probe/<schedule>.json` (`linear_probe`): rows {features, k, top1, top5}."""

    RULE: ClassVar[str] = "linear_probe"
    WHAT: ClassVar[str] = "probe file"

    rows: list[dict]
    features: str = ""


@dataclass(frozen=True)
class EntropySummary(Record):
    """`results/<exp>/entropy/<schedule>.json` (`measure_entropy`)."""

    RULE: ClassVar[str] = "measure_entropy"
    WHAT: ClassVar[str] = "entropy summary"

    n_sequences: int
    n_images: int
    seq_len: int
    log2_n: float
    threshold_bits: float
    t_star_measured: int
    t_star_theory: int
    measured_bits_total: float
    seconds: float | None = None


def write_record(path: str | Path, record: Record) -> None:
    """The record as its metric JSON, atomically."""
    write_json(path, asdict(record))


def read_record(path: str | Path, cls: type[R]) -> R:
    """The `cls` record of a metric JSON; a file of another schema is one line naming its rule."""
    data = read_metrics(path, cls.RULE)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if k not in data]
    unknown = sorted(set(data) - names)
    if missing or unknown:
        what = f"no {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
        raise StepError(
            f"{path}: {what} (another version's {cls.WHAT}); rerun the `{cls.RULE}` rule"
        )
    return cls(**data)


def records_by_name(paths: list[str], cls: type[R], expected: list) -> dict[Hashable, R]:
    """{record.key: record} of metric files, exactly the `expected` keys in their order
    (`vcq.runfiles.by_name`); no paths: {}."""
    return by_name(
        paths, lambda p: read_record(p, cls), lambda r: r.key, expected, cls.WHAT, cls.RULE
    )
