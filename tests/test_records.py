"""vcq.metrics.records: each metric file reads back as the record written, through one generic
reader, and a file of another schema is one line naming the rule that writes it."""

import json

import pytest
from report_runfiles import entropy_record, gen_record, recon_record

from vcq.io import StepError
from vcq.metrics.records import ProbeMetrics, read_record, write_record

RECORDS = {
    "generation": gen_record("cosine", {"name": "p", "guidance": "none"}, 3.0),
    "reconstruction": recon_record("cosine", 20.0, None, usage_per_position=[{"t": 0}]),
    "probe": ProbeMetrics("cosine", [{"features": "codes", "k": 4, "top1": 1.0, "top5": 2.0}]),
    "entropy": entropy_record("cosine", 5),
}


@pytest.mark.parametrize("kind", RECORDS)
def test_a_record_reads_back_as_written(tmp_path, kind):
    record = RECORDS[kind]
    write_record(tmp_path / "m.json", record)
    assert read_record(tmp_path / "m.json", type(record)) == record


@pytest.mark.parametrize("kind", RECORDS)
def test_a_file_of_another_schema_names_the_rule_that_writes_it(tmp_path, kind):
    record = RECORDS[kind]
    cls, path = type(record), tmp_path / "m.json"
    write_record(path, record)
    data = json.loads(path.read_text())
    first = next(k for k in data if k != "schedule")
    path.write_text(json.dumps({**data, "fid": 1.0}))  # a key of an older version
    with pytest.raises(StepError, match=rf"unknown key 'fid' \(another version's {cls.WHAT}\)"):
        read_record(path, cls)
    del data[first]
    path.write_text(json.dumps(data))
    with pytest.raises(StepError) as e:
        read_record(path, cls)
    assert str(e.value) == (
        f"{path}: no {first!r} (another version's {cls.WHAT}); rerun the `{cls.RULE}` rule"
    )
