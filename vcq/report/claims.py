"""Check a finished run against the README's qualitative demo claims and print its key figures.

`python -m vcq.report.claims --config config/default.yaml` (what CI runs after `make demo`) reads
the run's metric records through their one reader and prints the machine (from the run's
environment.json), PSNR and its mean-colour baseline per schedule, the demo classifier's accuracy
on the samples of every preset and the measured and theoretical entropy cliff t*. It exits 1 with
one `error:` line per claim that does not hold: every schedule's reconstructions at least
`MIN_PSNR_GAIN_DB` above the baseline, every preset's samples recognised at least
`MIN_CLASS_ACCURACY` of the time (README "What the demo measures").
"""

from __future__ import annotations

import sys
from pathlib import Path

from vcq.cli import step_parser
from vcq.config import ConfigError, load_config, rule_spec
from vcq.io import StepError, read_json
from vcq.metrics.records import (
    EntropySummary,
    GenerationMetrics,
    ReconstructionMetrics,
    read_record,
)
from vcq.paths import Layout
from vcq.sampling import sampled_pairs

# README "What the demo measures" states both; tests/test_claims.py checks that it still does
MIN_PSNR_GAIN_DB = 6.0
MIN_CLASS_ACCURACY = 0.60


def psnr_failures(records: list[ReconstructionMetrics]) -> list[str]:
    """One line per schedule whose PSNR is less than `MIN_PSNR_GAIN_DB` above its baseline."""
    return [
        f"{r.schedule}: PSNR {r.psnr:.2f} dB is only {r.psnr - r.psnr_mean_colour_baseline:.2f} dB "
        f"above the mean-colour baseline {r.psnr_mean_colour_baseline:.2f} dB "
        f"(README claims >= {MIN_PSNR_GAIN_DB:g})"
        for r in records
        if r.psnr - r.psnr_mean_colour_baseline < MIN_PSNR_GAIN_DB
    ]


def accuracy_failures(records: list[GenerationMetrics]) -> list[str]:
    """One line per (schedule, preset) whose samples the demo classifier recognises less often
    than `MIN_CLASS_ACCURACY` (records without a class accuracy, e.g. Inception runs: none)."""
    return [
        f"{r.schedule} {r.preset.get('name')}: samples recognised {r.class_accuracy:.1%} "
        f"(README claims >= {MIN_CLASS_ACCURACY:.0%})"
        for r in records
        if r.class_accuracy is not None and r.class_accuracy < MIN_CLASS_ACCURACY
    ]


def key_figures(
    environment: dict | None,
    threads: int,
    recon: list[ReconstructionMetrics],
    gen: list[GenerationMetrics],
    entropy: list[EntropySummary],
) -> list[str]:
    """The lines CI logs: machine, threads per step, torch build, then the run's key figures."""
    env = environment or {}
    lines = [
        f"cpu: {env.get('cpu_model', 'unknown (no environment.json)')}, "
        f"{env.get('cpus_usable', '?')} usable cores, {threads} thread(s) per step",
        f"torch: {env.get('torch', '?')} (CUDA {env.get('torch_cuda')})",
    ]
    for r in recon:
        gain = r.psnr - r.psnr_mean_colour_baseline
        lines.append(
            f"psnr {r.schedule}: {r.psnr:.2f} dB, baseline {r.psnr_mean_colour_baseline:.2f} dB, "
            f"+{gain:.2f} dB"
        )
    for r in gen:
        if r.class_accuracy is not None:
            cfg = "cfg" if r.guided else "no cfg"
            lines.append(
                f"class accuracy {r.schedule} {r.preset.get('name')} ({cfg}): "
                f"{r.class_accuracy:.1%}"
            )
    for r in entropy:
        lines.append(f"t* {r.schedule}: measured {r.t_star_measured}, theory {r.t_star_theory}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the key figures of the run a config names; 1 when a claim does not hold."""
    args = step_parser(__doc__.splitlines()[0]).parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        layout = Layout.of(cfg)
        names = [s["name"] for s in cfg["schedules"]]
        recon = [read_record(layout.recon(n), ReconstructionMetrics) for n in names]
        gen = [read_record(layout.gen(s, p), GenerationMetrics) for s, p in sampled_pairs(cfg)]
        entropy = [read_record(layout.entropy(n), EntropySummary) for n in names]
        # written at workflow start (README "Locked environment"); a run by hand has none
        env_file = Path(layout.environment())
        environment = read_json(env_file, "all") if env_file.is_file() else None
    except (ConfigError, StepError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    threads = rule_spec(cfg, "train_tokenizer")["cpus_per_task"]
    for line in key_figures(environment, threads, recon, gen, entropy):
        print(line)
    failures = psnr_failures(recon) + accuracy_failures(gen)
    for line in failures:
        print(f"error: claim does not hold: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
