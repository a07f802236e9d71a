"""config/README.md against the schemas and the config folder, so the documentation cannot drift."""

from pathlib import Path

import yaml

from vcq.config import SCHEMA_DIR, load_config, load_schema
from vcq.config_reference import reference, update

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "config/README.md"

# the JSON-schema keywords the schemas use; anything else is a typo, or the tail of a description
# that a comma cut off inside a YAML flow mapping ({description: a, b} is two keys)
KEYWORDS = {
    "$schema", "type", "default", "description", "enum", "pattern", "not", "required",
    "properties", "additionalProperties", "items", "minItems", "maxItems", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum",
}  # fmt: skip


def test_every_key_of_every_schema_is_documented_as_the_schema_says():
    text = README.read_text()
    assert update(README, reference()) == text, (
        "config/README.md differs from the schemas: run "
        "`python -m vcq.config_reference config/README.md`"
    )
    assert "`tokenizer.train.lr`" in text and "`sampling.presets[].scale`" in text
    assert "`resources.<name>.gpus`" in text and "`tokenizer.model.patch_size`" in text


def _unknown_keywords(schema: dict, where: str) -> list[str]:
    found = [f"{where}: {k!r}" for k in schema if k not in KEYWORDS]
    for key, sub in schema.get("properties", {}).items():
        found += _unknown_keywords(sub, f"{where}.{key}")
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            found += _unknown_keywords(schema[key], f"{where}[{key}]")
    return found


def test_schemas_use_only_schema_keywords():
    models = sorted((SCHEMA_DIR / "sections/models").glob("*.schema.yaml"))
    found = _unknown_keywords(load_schema(), "config")
    for path in models:
        found += _unknown_keywords(yaml.safe_load(path.read_text()), path.stem)
    assert found == []


def test_every_file_of_the_config_folder_is_described():
    text = README.read_text()
    for path in (ROOT / "config").iterdir():
        if path.name != "README.md":
            assert f"`{path.name}" in text, path.name


def test_the_ci_config_is_valid_and_exercises_spaces_and_the_gan():
    cfg = load_config(ROOT / ".test/config/config.yaml")
    assert " " in cfg["paths"]["work_dir"]
    assert cfg["tokenizer"]["train"]["disc_start"] < cfg["tokenizer"]["train"]["steps"]
    assert cfg["data"]["image_size"] == 16 and cfg["eval"]["feature_extractor"] == "demo"
