"""`vcq.paths.Layout` is the one place run-file names are written: no string in the library, the
steps or the workflow spells one of its file names (docs/ARCHITECTURE.md, "File layout")."""

import inspect
import io
import re
import tokenize
from pathlib import Path

from vcq.paths import Layout

ROOT = Path(__file__).resolve().parents[1]
# a name that is only a file type (a suffix swapped in by with_suffix) says nothing of a layout
# Python 3.12 splits f-strings into tokens; their literal parts are checked like strings
FSTRING_PART = getattr(tokenize, "FSTRING_MIDDLE", None)
EXTENSIONS = {".json", ".png", ".pdf", ".csv", ".npz", ".npy", ".pt", ".md", ".h5", ".yaml"}


def layout_names() -> set[str]:
    """The fixed parts of every name Layout gives: file names of its paths, and what its static
    methods add to a step's output path `D/F.x` (`last.pt`, `.partial`, `.rank`, ...)."""
    layout, names = Layout("W", "R", "E"), set()
    for name, member in inspect.getmembers(Layout):
        if name.startswith("_") or name == "of" or not callable(member):
            continue
        params = inspect.signature(member).parameters
        if isinstance(inspect.getattr_static(Layout, name), staticmethod):
            args = ["D/F.x", 0, "img"][: len(params)]
            added = str(member(*args)).removeprefix("D/F.x").removeprefix("D/F").removeprefix("D")
            names.add(re.sub(r"^/?0*|\d+$", "", added))
        elif all(p.default is not p.empty for p in list(params.values())[1:]):
            base = str(getattr(layout, name)()).rsplit("/", 1)[-1]
            if "{" not in base and "." in base:
                names.add(base)
    return {n for n in names if n and n not in EXTENSIONS}


def spelled_paths(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the string literals of a Python or Snakemake file that look like paths:
    no whitespace (prose: help texts, messages) and not a docstring."""
    out, previous = [], tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        kind = tok.type
        if kind in (tokenize.COMMENT, tokenize.NL):
            continue
        statement = previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        literal = (kind == tokenize.STRING and not statement) or kind == FSTRING_PART
        if literal and not re.search(r"\s", tok.string):
            out.append((tok.start[0], tok.string))
        previous = kind
    return out


def test_layout_names_are_found():
    assert {"last.pt", "train_log.jsonl", "summary.md", ".rank", ".chunks", ".partial"} <= (
        layout_names()
    )
    assert "loss.png" in layout_names() and "train.log" in layout_names()


def test_no_run_file_name_is_spelled_outside_layout():
    names = layout_names()
    files = [
        p
        for folder in ("vcq", "pipeline_steps", "workflow")
        for p in sorted((ROOT / folder).rglob("*"))
        if p.suffix in (".py", ".smk") or p.name == "Snakefile"
    ]
    offenders = [
        f"{p.relative_to(ROOT)}:{line}: {text}"
        for p in files
        if p != ROOT / "vcq/paths.py"
        for line, text in spelled_paths(p)
        if any(n in text for n in names)
    ]
    assert not offenders, "spelled outside vcq.paths.Layout:\n" + "\n".join(offenders)
