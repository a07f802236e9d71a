"""Write results/<exp>/provenance.json: for each table and figure, the config hash, the hashes
of the files it was made from and the code version (vcq.provenance)."""

from __future__ import annotations

import json
from pathlib import Path

from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.io import write_json
from vcq.provenance import provenance_record


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument(
        "--products",
        required=True,
        help='JSON list of {"rule", "outputs", "inputs"}: the report rules and their files',
    )
    parser.add_argument("--out", type=Path, required=True, help="provenance JSON")
    args = parser.parse_args()
    load_step_config(args)  # a bad config is one line here too
    log = setup_logging()
    record = provenance_record(args.config, json.loads(args.products))
    write_json(args.out, record)
    log.info("wrote %s (%d tables and figures)", args.out, len(record["outputs"]))


if __name__ == "__main__":
    run_step(main)
