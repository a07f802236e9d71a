"""docs/EXTENDING.md touches the files it says: each walk-through applied to a copy of the
repository, its commands run there, and the files that changed compared with its "Files touched"
line (read from the doc, so the doc and this test cannot drift apart)."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from report_runfiles import run_files
from test_extending import ROUND_MODULE

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs/EXTENDING.md").read_text()
SKIPPED = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def section(title: str) -> str:
    """The text of the doc's section `## <title>`."""
    return DOC.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, lang: str) -> list[str]:
    """The fenced code blocks of `lang` in `text`, de-indented (list items indent theirs)."""
    return [textwrap.dedent(b) for b in re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)]


def table_module() -> str:
    """ "Add a table"'s module `lab/gain_table.py`: pandas and the walk-through's two blocks."""
    builder, registration = blocks(section("Add a table"), "python")
    return "import pandas as pd\n\n" + builder + "\n" + registration


def files_touched(text: str) -> set[str]:
    """The paths in backticks of the first sentence of a section's "Files touched:" paragraph."""
    para = text.split("Files touched:", 1)[1].split("\n\n", 1)[0]
    paths = set()
    for m in re.finditer(r"`([^`]*)`|\.(?=\s|$)", para):
        if m.group(1) is None:  # a full stop outside backticks ends the sentence
            break
        paths.add(m.group(1))
    return paths


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content hash of every file under `root` (a link: its target)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED]
        for name in files:
            path = Path(folder, name)
            data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            out[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    """The repository's tracked files (what a fresh checkout holds)."""
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [p for p in out.stdout.split("\0") if p and os.path.lexists(ROOT / p)]


@pytest.fixture
def repo(tmp_path, tracked) -> Path:
    """A copy of the checkout's tracked files (links kept as links)."""
    copy = tmp_path / "repo"
    for rel in tracked:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, copy / rel, follow_symlinks=False)
    return copy


def run_in(repo: Path, code: str, lab: bool = False) -> None:
    """Regenerate the config reference as every walk-through's last step would (so a list the
    change alters shows up as a touched file), then run `code` there; with `lab`, the user's
    folder `lab/` is on PYTHONPATH as the doc says."""
    paths = [str(repo / "lab")] * lab + [str(repo)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONDONTWRITEBYTECODE": "1"}
    script = "import runpy, sys\n"
    script += "sys.argv = ['x', 'config/README.md']\n"
    script += "runpy.run_module('vcq.config_reference', run_name='__main__')\n" + code
    r = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]


def changed(repo: Path, before: dict[str, str]) -> set[str]:
    after = snapshot(repo)
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(("\n\n" if path.exists() and path.stat().st_size else "") + text)


def edit(path: Path, anchor: str, new: str) -> None:
    """Insert `new` after the line holding `anchor` (which must occur once)."""
    text = path.read_text()
    assert text.count(anchor) == 1, f"{path.name}: {anchor!r} no longer occurs once"
    head, tail = text.split(anchor, 1)
    line_end = tail.index("\n") + 1
    path.write_text(head + anchor + tail[:line_end] + new + tail[line_end:])


def test_add_a_schedule_touches_the_files_it_states(repo):
    text, before = section("Add a schedule"), snapshot(repo)
    (code,) = blocks(text, "python")
    (config,) = blocks(text, "yaml")
    append(repo / "vcq/schedules.py", code)
    (repo / "config/demo_smooth.yaml").write_text(config)
    append(
        repo / "tests/test_schedules.py",
        "def test_smoothstep_ends_at_0_and_1():\n"
        "    f = schedules.SHAPES['smoothstep'](np.array([0.0, 1.0]), 2.5)\n"
        "    assert f.tolist() == [0.0, 1.0]\n",
    )
    run_in(
        repo,
        "from vcq.config import load_config\n"
        "cfg = load_config('config/demo_smooth.yaml')\n"
        "assert 'smoothstep' in {s['kind'] for s in cfg['schedules']}\n",
    )
    assert changed(repo, before) == files_touched(text)


def test_add_a_table_touches_the_files_it_states(repo):
    text, before = section("Add a table"), snapshot(repo)
    (config,) = blocks(text, "yaml")
    append(repo / "lab/gain_table.py", table_module())
    (repo / "config/demo_gain.yaml").write_text(config)
    run_in(
        repo,
        "from vcq.config import load_config\n"
        "from vcq.report.tables import tables_of\n"
        "cfg = load_config('config/demo_gain.yaml')\n"
        "assert 'table_gain' in [t.name for t in tables_of('run', cfg)]\n",
        lab=True,
    )
    assert changed(repo, before) == files_touched(text)


def test_add_a_figure_touches_the_files_it_states(repo, tmp_path):
    """The figure is drawn by plot_figures, captioned, from the recon records alone."""
    text, before = section("Add a figure"), snapshot(repo)
    (code,) = blocks(text, "python")
    (config,) = blocks(text, "yaml")
    append(repo / "lab/psnr_figure.py", code)
    (repo / "config/demo_psnr.yaml").write_text(config)
    files, settings = run_files(tmp_path / "run")
    out = tmp_path / "figures"
    argv = ["plot_figures.py", "--config", "config/demo_psnr.yaml", *settings]
    argv += ["--out-dir", str(out), "--recon", *files["--recon"]]
    run_in(
        repo,
        f"sys.argv = {argv!r}\n"
        "runpy.run_path('pipeline_steps/plot_figures.py', run_name='__main__')\n",
        lab=True,
    )
    assert (out / "psnr_bars.png").stat().st_size > 1000
    assert "Reconstruction PSNR per schedule." in (out / "psnr_bars.rst").read_text()
    assert changed(repo, before) == files_touched(text)


def test_add_a_metric_touches_the_files_it_states(repo):
    """Sharpness of the reconstructions (a stand-in value: what matters is where it goes)."""
    text, before = section("Add a metric"), snapshot(repo)
    edit(
        repo / "vcq/metrics/recon.py",
        '"psnr_mean_colour_baseline": self.base / max(self.n, 1),',
        '            "sharpness": self.psnr / max(self.n, 1),\n',
    )
    edit(
        repo / "vcq/metrics/records.py",
        "    codebook_usage: float  #",
        "    sharpness: float | None = None  # mean gradient energy of the reconstructions\n",
    )
    edit(
        repo / "vcq/report/tables.py",
        '"psnr_baseline": rec.psnr_mean_colour_baseline if rec else np.nan,',
        '                "sharpness": rec.sharpness if rec else np.nan,\n',
    )
    contracts = repo / "docs/CONTRACTS.md"
    old = "codebook_usage, usage_per_position}"
    assert old in contracts.read_text()
    contracts.write_text(contracts.read_text().replace(old, old[:-1] + ", sharpness}", 1))
    run_in(
        repo,
        "import dataclasses, torch\n"
        "from vcq.metrics.recon import ReconStats\n"
        "from vcq.metrics.records import ReconstructionMetrics\n"
        "import vcq.report.tables\n"
        "assert 'sharpness' in ReconStats(torch.tensor([2, 4])).result()\n"
        "assert 'sharpness' in {f.name for f in dataclasses.fields(ReconstructionMetrics)}\n",
    )
    assert changed(repo, before) == files_touched(text)


def test_add_a_quantizer_touches_the_files_it_states(repo):
    text, before = section("Add a quantizer"), snapshot(repo)
    (config,) = blocks(text, "yaml")
    (repo / "lab").mkdir()
    (repo / "lab/round_quant.py").write_text(ROUND_MODULE)  # the doc's class, whole
    (repo / "config/demo_round.yaml").write_text(config)
    run_in(
        repo,
        "from vcq.config import load_config, tokenizer_section\n"
        "cfg = load_config('config/demo_round.yaml')\n"
        "assert tokenizer_section(cfg, 'round_cosine')['quantizer']['kind'] == 'round'\n",
        lab=True,
    )
    touched = files_touched(text)
    assert not any(p.startswith("vcq/") for p in touched)
    assert changed(repo, before) == touched
