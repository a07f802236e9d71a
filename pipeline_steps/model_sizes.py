"""Print the parameter breakdown of an experiment's tokenizer and AR model beside Table 3."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from vcq.ar import ARConfig, count_params, format_breakdown
from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.config import k_sizes_for, tokenizer_section
from vcq.tokenizer import build_tokenizer, parameter_breakdown


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument(
        "--num-classes", type=int, default=1000, help="AR class embeddings (ImageNet: 1000)"
    )
    args = parser.parse_args()
    cfg, log = load_step_config(args), setup_logging()
    paper = yaml.safe_load(Path(cfg["report"]["paper_numbers"]).read_text()).get("table3", {})
    name = max(cfg["schedules"], key=lambda s: s["k_max"])["name"]  # the largest codebook
    k_sizes = k_sizes_for(cfg, name)
    with torch.device("meta"):
        tok = parameter_breakdown(build_tokenizer(tokenizer_section(cfg, name), k_sizes))
    ar_cfg = ARConfig.from_dict(
        {
            **cfg["ar"]["model"],
            "vocab_size": int(k_sizes.max()),
            "seq_len": len(k_sizes),
            "num_classes": args.num_classes,
        }
    )
    ar = count_params(ar_cfg)
    for label, model_name, parts in (
        ("tokenizer", cfg["tokenizer"]["model"]["name"], tok),
        ("AR", cfg["ar"]["model"]["name"], ar),
    ):
        ref = paper.get(model_name)
        versus = (
            f"paper {ref / 1e6:.0f}M, {100 * (parts['total'] / ref - 1):+.1f}%"
            if ref
            else "no paper figure"
        )
        log.info(
            "%s %s (Kmax %d, L %d): %.2fM (%s)\n%s",
            label,
            model_name,
            int(k_sizes.max()),
            len(k_sizes),
            parts["total"] / 1e6,
            versus,
            format_breakdown(parts),
        )


if __name__ == "__main__":
    run_step(main)
