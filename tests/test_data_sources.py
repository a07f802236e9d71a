"""Experiments on one data source share its manifest: switching between them reruns nothing, a
changed folder reruns make_dataset (issue 22 cases 3 and 5); a folder's classes and images are
validated by the workflow's make_dataset."""

from pathlib import Path

from PIL import Image

from vcq.io import read_json

REPO = Path(__file__).resolve().parent.parent


def test_experiments_on_one_root_share_it_and_a_changed_folder_reruns(run_snakemake, tmp_path):
    root = tmp_path / "mine"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            Image.new("RGB", (8, 8), (40 * len(c), 0, 0)).save(root / split / c / "0.png")
    configs = {
        name: {
            "extends": str(REPO / "config/default.yaml"),
            "experiment": name,
            "data": {"source": "folder", "root": str(root)},
            "paths": {"work_dir": str(tmp_path / "work"), "results_dir": str(tmp_path / "res")},
        }
        for name in ("one", "two")
    }
    until = ("--until", "make_dataset", "--cores", "1")
    run_snakemake(*until, config=configs["one"])
    run_snakemake(*until, config=configs["two"])
    planned = run_snakemake.planned
    manifests = {n: tmp_path / "work" / n / "data" / "manifest.json" for n in configs}
    shared = list((tmp_path / "work" / "manifests").iterdir())
    assert len(shared) == 1  # validated once, by the first experiment
    assert read_json(manifests["one"]) == read_json(manifests["two"]) == read_json(shared[0])
    log_two = (tmp_path / "work" / "two" / "logs" / "make_dataset.log").read_text()
    assert "not validated again" in log_two
    mtime = manifests["one"].stat().st_mtime_ns
    for name in ("one", "two", "one"):  # switching experiments reruns nothing
        assert planned(run_snakemake("-n", *until, config=configs[name])) == {}
    assert manifests["one"].stat().st_mtime_ns == mtime
    # issue 22 case 5: a class folder added to the root reruns make_dataset for both experiments
    for split in ("train", "val"):
        (root / split / "c").mkdir()
        Image.new("RGB", (8, 8)).save(root / split / "c" / "0.png")
    for name in configs:
        assert planned(run_snakemake("-n", *until, config=configs[name])) == {"make_dataset": 1}
    run_snakemake(*until, config=configs["one"])
    assert read_json(manifests["one"])["classes"] == ["a", "b", "c"]


def test_folder_data_is_validated_by_the_workflow(run_snakemake, tmp_path):
    cfg = {
        "extends": str(REPO / "config/default.yaml"),
        "data": {"source": "folder", "root": str(tmp_path / "mine")},
        "paths": {"work_dir": str(tmp_path / "work"), "results_dir": str(tmp_path / "results")},
        "report": {"reference_configs": []},
    }
    (tmp_path / "mine" / "train" / "a").mkdir(parents=True)
    (tmp_path / "mine" / "val" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "mine" / "train" / "a" / "0.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "mine" / "val" / "b" / "0.png")
    manifest = tmp_path / "work" / "demo" / "data" / "manifest.json"

    def snakemake(*args, check=True):
        return run_snakemake("--cores", "1", *args, config=cfg, profile=None, check=check)

    r = snakemake(manifest, check=False)
    assert r.returncode != 0 and not manifest.exists()
    log = (tmp_path / "work" / "demo" / "logs" / "make_dataset.log").read_text()
    assert log.strip().splitlines()[-1].startswith("error: data.root:")
    assert "different class folders" in log
    (tmp_path / "mine" / "val" / "b").rename(tmp_path / "mine" / "val" / "a")
    (tmp_path / "mine" / "train" / "a" / "bad.png").write_bytes(b"not an image")
    dry = snakemake("-n")
    assert "rule make_dataset" in dry.stdout and str(manifest) in dry.stdout
    snakemake(manifest)
    m = read_json(manifest)
    assert m["counts"] == {"train": 1, "val": 1} and m["skipped"]["train"][0].endswith("bad.png")
