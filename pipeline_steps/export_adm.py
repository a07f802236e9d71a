"""Export a sample .npz for ADM's evaluator (guided-diffusion `evaluations/evaluator.py`): `arr_0`
alone, uint8 N×H×W×3, in the sample file's seeded random class order."""

from __future__ import annotations

from vcq.cli import run_step, setup_logging, step_parser
from vcq.runfiles import write_adm_samples


def main() -> None:
    """Parse flags, write the export atomically."""
    parser = step_parser(__doc__)
    parser.add_argument("--samples", required=True, help="sample .npz of the `sample` rule")
    parser.add_argument("--out", required=True, help="output .npz, e.g. results/EXP/adm/S/P.npz")
    args = parser.parse_args()
    log = setup_logging()
    write_adm_samples(args.out, args.samples)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    run_step(main)
