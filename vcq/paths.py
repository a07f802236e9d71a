"""The file layout of an experiment, defined once: the workflow, the steps and the report use it.

Every method takes the wildcard values and returns a path string; called with the defaults it
returns the Snakemake pattern (`{schedule}`, `{preset}`, `{split}` left in place). The files a step
keeps beside its output (resume state, logs, partial and shard files) are named from that output's
path by the static methods at the end, so a step run by hand with any `--out` keeps them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Paths under `work_dir/<experiment>` (intermediate) and `results_dir/<experiment>`."""

    work_dir: str
    results_dir: str
    experiment: str

    @classmethod
    def of(cls, cfg: dict) -> Layout:
        """The layout of a loaded config (`paths.work_dir`, `paths.results_dir`, `experiment`)."""
        return cls(cfg["paths"]["work_dir"], cfg["paths"]["results_dir"], cfg["experiment"])

    @property
    def work(self) -> str:
        """The experiment's intermediate files."""
        return f"{self.work_dir}/{self.experiment}"

    @property
    def results(self) -> str:
        """The experiment's reported files (tables, figures, metrics)."""
        return f"{self.results_dir}/{self.experiment}"

    def config_snapshot(self, sha: str) -> str:
        """The resolved config of one run, named by its content's hash: what its jobs read."""
        return f"{self.work}/config/{sha}.yaml"

    def environment(self) -> str:
        """The environment a run started in (vcq.doctor.environment_record)."""
        return f"{self.results}/environment.json"

    def data_manifest(self) -> str:
        """The experiment's copy of its data set's manifest (the `make_dataset` output)."""
        return f"{self.work}/data/manifest.json"

    @staticmethod
    def images_manifest(root: str | Path) -> Path:
        """The manifest a data set's images root holds (the synthetic generator's, written last)."""
        return Path(root) / "manifest.json"

    def shared_manifest(self, name: str) -> str:
        """A data source's manifest shared by every experiment (`vcq.data.source.manifest_name`)."""
        return f"{self.work_dir}/manifests/{name}"

    def log(self, job: str) -> str:
        """The stdout/stderr log of one job."""
        return f"{self.work}/logs/{job}.log"

    def demo_features(self) -> str:
        """The demo feature network's weights (the default of `eval.demo_weights`)."""
        return f"{self.work}/features/demo_net.pt"

    def eval_cache(self) -> str:
        """Cached reference statistics for FID (the default of `eval.cache_dir`)."""
        return f"{self.work}/cache/eval"

    def tokenizer(self, schedule: str = "{schedule}") -> str:
        """The trained tokenizer (its resume state and metrics log sit beside it)."""
        return f"{self.work}/tokenizer/{schedule}/final.pt"

    def tokenizer_log(self, schedule: str = "{schedule}") -> str:
        """The tokenizer's training metrics (JSONL), kept across resumes."""
        return str(self.metrics_log(self.tokenizer(schedule)))

    def recon(self, schedule: str = "{schedule}") -> str:
        """Reconstruction metrics of the val split (JSON)."""
        return f"{self.results}/recon/{schedule}.json"

    def recon_grid(self, schedule: str = "{schedule}") -> str:
        """A PNG of val originals above their reconstructions (eval_recon's quick look)."""
        return f"{self.results}/recon/{schedule}.png"

    def recon_images(self, schedule: str = "{schedule}") -> str:
        """The val reconstructions and their originals (.npz, `vcq.runfiles.ReconImages`)."""
        return f"{self.work}/recon/{schedule}.npz"

    def tokens(self, schedule: str = "{schedule}", split: str = "{split}") -> str:
        """The HDF5 token store of one split."""
        return f"{self.work}/tokens/{schedule}/{split}.h5"

    def entropy(self, schedule: str = "{schedule}", ext: str = "json") -> str:
        """The measured entropy cliff: summary `json`, per-position `csv` and its plot `png`."""
        return f"{self.results}/entropy/{schedule}.{ext}"

    def probe(self, schedule: str = "{schedule}") -> str:
        """Linear-probe accuracies (JSON)."""
        return f"{self.results}/probe/{schedule}.json"

    def probe_state(self, schedule: str = "{schedule}", probe: str = "{probe}") -> str:
        """Resume state of one linear probe of a schedule (its result once finished)."""
        return f"{self.work}/probe/{schedule}/{probe}.pt"

    def ar(self, schedule: str = "{schedule}") -> str:
        """The trained AR model (its resume state and metrics log sit beside it)."""
        return f"{self.work}/ar/{schedule}/final.pt"

    def ar_log(self, schedule: str = "{schedule}") -> str:
        """The AR model's training metrics (JSONL), kept across resumes."""
        return str(self.metrics_log(self.ar(schedule)))

    def position_loss(self, schedule: str = "{schedule}") -> str:
        """Per-position train/val cross-entropy of the final AR model (CSV)."""
        return f"{self.results}/ar/{schedule}_position_loss.csv"

    def samples(self, schedule: str = "{schedule}", preset: str = "{preset}") -> str:
        """Generated images of one inference preset (ADM-style .npz)."""
        return f"{self.work}/samples/{schedule}/{preset}.npz"

    def adm_samples(self, schedule: str = "{schedule}", preset: str = "{preset}") -> str:
        """One preset's images alone, for ADM's evaluator (`arr_0` uint8 N×H×W×3)."""
        return f"{self.results}/adm/{schedule}/{preset}.npz"

    def gen(self, schedule: str = "{schedule}", preset: str = "{preset}") -> str:
        """Generation metrics of one inference preset (JSON)."""
        return f"{self.results}/gen/{schedule}/{preset}.json"

    def provenance(self) -> str:
        """Config hash, input hashes and code version of every table and figure (JSON)."""
        return f"{self.results}/provenance.json"

    def summary(self) -> str:
        """The key figures of every table, in one Markdown page."""
        return str(self.summary_of(self.tables_dir()))

    def tables_dir(self) -> str:
        """The paper's tables (md, csv, tex)."""
        return f"{self.results}/tables"

    def table(self, name: str, ext: str = "md") -> str:
        """One table."""
        return f"{self.tables_dir()}/{name}.{ext}"

    def figures_dir(self) -> str:
        """The figures (png, pdf)."""
        return f"{self.results}/figures"

    def figure(self, name: str, ext: str = "png") -> str:
        """One figure."""
        return f"{self.figures_dir()}/{name}.{ext}"

    def sample_grid(
        self, schedule: str = "{schedule}", preset: str = "{preset}", view: str = "random"
    ) -> str:
        """A figure of one preset's samples: `random` distinct classes (as the paper's Figs.
        3–11) or the `per_class` view (one row per class)."""
        suffix = "" if view == "random" else f"_{view}"
        return self.figure(f"samples_{schedule}_{preset}{suffix}")

    # Files beside a step's output, named from its path (not rule outputs: see ARCHITECTURE.md).

    @staticmethod
    def resume_state(out: str | Path) -> Path:
        """A training loop's resume state beside its output (`vcq.train.checkpoint`)."""
        return Path(out).parent / "last.pt"

    @staticmethod
    def metrics_log(out: str | Path) -> Path:
        """A training loop's JSONL metrics log beside its output, kept across resumes."""
        return Path(out).parent / "train_log.jsonl"

    @staticmethod
    def loss_plot(out: str | Path) -> Path:
        """The plot of a training loop's metrics log (PNG) beside its output."""
        return Path(out).parent / "loss.png"

    @staticmethod
    def step_log(out: str | Path) -> Path:
        """A training step's own text log beside its output (rank 0's)."""
        return Path(out).parent / "train.log"

    @staticmethod
    def model_meta(out: str | Path) -> Path:
        """A trained model's metadata (JSON) beside its checkpoint."""
        return Path(out).with_suffix(".json")

    @staticmethod
    def partial(out: str | Path) -> Path:
        """A token store being written (resumable), renamed to `out` when complete."""
        return Path(f"{out}.partial")

    @staticmethod
    def rank_shard(out: str | Path, rank: int) -> Path:
        """One rank's share of a file that several ranks write and rank 0 merges."""
        return Path(f"{out}.rank{rank}")

    @staticmethod
    def sample_chunks(out: str | Path) -> Path:
        """The folder of a sample file's finished chunks (resumable), beside it."""
        return Path(out).with_suffix(".chunks")

    @staticmethod
    def sample_chunk(chunks: str | Path, index: int, what: str) -> Path:
        """Chunk `index` of `what` (`img` or `tok`) in a (keyed) chunk folder."""
        return Path(chunks) / f"{index:05d}_{what}.npy"

    @staticmethod
    def summary_of(tables_dir: str | Path) -> Path:
        """The summary.md of the run tables in `tables_dir`, beside that folder."""
        return Path(tables_dir).parent / "summary.md"
