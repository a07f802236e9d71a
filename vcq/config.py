"""One configuration system: YAML files validated against JSON schemas, defaults filled in."""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml

from vcq.paths import Layout
from vcq.quantizers import options_schema, quantizer_class, quantizer_kinds
from vcq.schedules import SHAPES, schedule_k_sizes

# package data, so that a plain (non-editable) install validates configs too; the checkout's
# workflow/schemas and config/models are links to these folders
PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_DIR = PACKAGE_DIR / "schemas"
MODELS_DIR = PACKAGE_DIR / "model_configs"
MODEL_SECTIONS = {"tokenizer": "tokenizer", "ar": "ar"}


class ConfigError(ValueError):
    """A configuration problem, reported in one line that names the offending key."""


# YAML 1.1 (PyYAML) reads `5e-4` as a string: its floats need a dot and a signed exponent. YAML 1.2
# and every user read it as a number, so the one loader does too.
_EXP_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2's exponent floats (`5e-4`, `1e6`)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+.0123456789"))


def load_yaml(text: Any) -> Any:
    """YAML text or stream as the config system reads it (safe; `5e-4` is a float)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def _read_yaml(path: Path) -> Any:
    try:
        with open(path) as f:
            return load_yaml(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a readable YAML file ({e})") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}".replace("\n", " ")) from e


def load_schema() -> dict:
    """The full experiment schema: the top-level file with every section file plugged in."""
    schema = _read_yaml(SCHEMA_DIR / "config.schema.yaml")
    for section_file in sorted((SCHEMA_DIR / "sections").glob("*.schema.yaml")):
        name = section_file.name.removesuffix(".schema.yaml")
        schema["properties"][name] = _read_yaml(section_file)
    # the schedule kinds are registered in one place, vcq.schedules.SHAPES
    schema["properties"]["schedules"]["items"]["properties"]["kind"]["enum"] = list(SHAPES)
    return schema


def _model_schema(kind: str) -> dict:
    return _read_yaml(SCHEMA_DIR / "sections" / "models" / f"{kind}.schema.yaml")


def _fill_defaults(validator_class: type) -> type:
    """Extend a jsonschema validator so that validating also inserts `default` values."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if _is_exp_float_string(instance.get(key), sub):
                    # Snakemake reads --configfile with YAML 1.1, so `5e-4` arrives as a string
                    instance[key] = float(instance[key])
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
                elif sub.get("type") == "object" and key not in instance and "properties" in sub:
                    # an omitted section is an empty mapping, so its own defaults apply
                    instance[key] = {}
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _is_exp_float_string(value: Any, schema: dict) -> bool:
    """`value` is a `5e-4` that a YAML 1.1 reader left a string where `schema` wants a number."""
    types = schema.get("type", [])
    wants_number = "number" in (types if isinstance(types, list) else [types])
    return wants_number and isinstance(value, str) and bool(_EXP_FLOAT.match(value))


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def _error_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = set(error.instance) - set(error.schema.get("properties", {}))
        key = sorted(extra)[0] if extra else "?"
        return f"{path}.{key}" if path else key
    if error.validator == "required":
        missing = [r for r in error.validator_value if r not in error.instance]
        key = missing[0] if missing else "?"
        return f"{path}.{key}" if path else key
    return path or "<root>"


def validate(instance: dict, schema: dict, where: str = "config", prefix: str = "") -> dict:
    """Validate `instance` in place (filling defaults); raise ConfigError naming the bad key
    (as `prefix.key` when `instance` sits at `prefix` in the config)."""
    errors = sorted(_Validator(schema).iter_errors(instance), key=lambda e: len(e.absolute_path))
    if errors:
        e = errors[0]
        key = _error_path(e)
        if prefix:
            key = prefix if key == "<root>" else f"{prefix}.{key}"
        if e.validator == "additionalProperties":
            msg = f"unknown key '{key}'"
        elif e.validator == "required":
            msg = f"missing required key '{key}'"
        elif e.validator == "not":
            why = e.schema.get("description", "")
            msg = f"bad value at '{key}': {e.instance!r} is not allowed ({why})"
        else:
            msg = f"bad value at '{key}': {e.message}"
        raise ConfigError(f"{where}: {msg}")
    return instance


def _set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{k}' is not a mapping")
    node[keys[-1]] = value


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Apply `dotted.key=yaml_value` overrides (as given to `--set`)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = load_yaml(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override '{item}': invalid YAML value ({e.problem})") from e
        _set_dotted(cfg, key.strip(), value)
    return cfg


def resolve_model(section: str, model: str | dict) -> dict:
    """A model entry, validated: a name of `config/models/NAME.yaml`, an inline mapping, or a
    mapping whose `name` is a model file and whose other keys override it (e.g. `{name: ar_b,
    token_input: codes}`)."""
    if isinstance(model, str):
        path = MODELS_DIR / f"{model}.yaml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in MODELS_DIR.glob("*.yaml")))
            raise ConfigError(f"{section}.model: no model file {path} (known: {known})")
        spec = _read_yaml(path) or {}
        spec.setdefault("name", model)
    elif (MODELS_DIR / f"{model.get('name', '')}.yaml").exists():
        spec = {**resolve_model(section, model["name"]), **copy.deepcopy(model)}
    else:
        spec = copy.deepcopy(model)
        spec.setdefault("name", "inline")
    return validate(spec, _model_schema(MODEL_SECTIONS[section]), where=f"{section}.model")


def _deep_merge(base: dict, update: dict) -> dict:
    """`base` updated by `update`, recursing into mappings (lists and scalars are replaced)."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def _read_config_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A config mapping; `extends: other.yaml` (relative to this file) is merged underneath."""
    cfg = _read_yaml(path) or {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    parent = cfg.pop("extends", None)
    if parent is None:
        return cfg
    parent_path = (path.parent / parent).resolve()
    if parent_path in seen:
        raise ConfigError(f"{path}: 'extends' loops back to {parent_path}")
    return _deep_merge(_read_config_yaml(parent_path, (*seen, path.resolve())), cfg)


def load_config(path: str | Path, overrides: Iterable[str] | None = None) -> dict:
    """Read (following `extends`), override, validate and fill an experiment config (models too)."""
    cfg = _read_config_yaml(Path(path))
    overrides = list(overrides or [])
    apply_overrides(cfg, overrides)
    # a bad key may come from the command line rather than the file: say so
    where = f"{path} with --set {' '.join(overrides)}" if overrides else str(path)
    return validate_config(cfg, where=where)


def resolve_config(cfg: dict, base_dir: str | Path, where: str) -> dict:
    """A config mapping held in memory (e.g. Snakemake's `config`): its `extends` (relative to
    `base_dir`) merged underneath as for a file, then validated and filled like `load_config`."""
    cfg = copy.deepcopy(cfg)
    parent = cfg.pop("extends", None)
    if parent is not None:
        cfg = _deep_merge(_read_config_yaml((Path(base_dir) / parent).resolve()), cfg)
    return validate_config(cfg, where=where)


def extends_dir(files: list[str], extends: str | None) -> Path:
    """The folder an in-memory config's `extends` is relative to: that of the last of the merged
    config `files` that declares this value (as a file's own `extends`), else the working folder."""
    for f in reversed(files):
        raw = _read_yaml(Path(f)) or {}
        if isinstance(raw, dict) and "extends" in raw:
            return Path(f).parent if raw["extends"] == extends else Path(".")
    return Path(".")


def dump_config(cfg: dict) -> str:
    """A validated config as YAML that `load_config` reads back to the same mapping."""
    return yaml.safe_dump({k: v for k, v in cfg.items() if k != "_config_path"}, sort_keys=False)


def rule_spec(cfg: dict, rule: str) -> dict:
    """The resources of a workflow rule: its own entry over `default` over the built-in values."""
    spec = {"gpus": 0, "nodes": 1, "cpus_per_task": 1, "mem_mb": 4000, "runtime": 60}
    spec.update(cfg["resources"].get("default", {}))
    spec.update(cfg["resources"].get(rule, {}))
    return spec


def import_plugins(cfg: dict, where: str) -> None:
    """Import the config's `plugins`: modules whose import registers quantizer kinds, schedule
    kinds, tables or metric labels. Before validation, which reads those registries."""
    plugins = cfg.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(m, str) for m in plugins):
        raise ConfigError(f"{where}: bad value at 'plugins': a list of module names")
    for i, module in enumerate(plugins):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(
                f"{where}: bad value at 'plugins.{i}': cannot import {module!r} ({e}); "
                "is its folder on PYTHONPATH?"
            ) from e


def validate_config(cfg: dict, where: str) -> dict:
    """Validate and fill a merged config mapping in place; resolve models and derived paths."""
    import_plugins(cfg, where)
    validate(cfg, load_schema(), where=where)
    _derive_experiment_paths(cfg)
    for rule, res in cfg["resources"].items():
        if res.get("nodes", 1) > 1 and rule_spec(cfg, rule)["gpus"] < 1:
            raise ConfigError(
                f"{where}: resources.{rule}.nodes: more than one node needs gpus >= 1 "
                "(nodes only spread torchrun's GPU ranks)"
            )
    for section in MODEL_SECTIONS:
        if section in cfg and "model" in cfg[section]:
            cfg[section]["model"] = resolve_model(section, cfg[section]["model"])
    names = [s["name"] for s in cfg["schedules"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: duplicate schedule names in 'schedules': {names}")
    for s in cfg["schedules"]:
        if s["k_min"] > s["k_max"]:
            raise ConfigError(f"{where}: schedules.{s['name']}: k_min > k_max")
    _check_preset_schedules(cfg, set(names), where)
    _check_divisibility(cfg, where)
    _check_workflow_paths(cfg, where)
    _check_batches(cfg, where)
    _check_quantizers(cfg, where)
    cfg["_config_path"] = where
    return cfg


def _check_quantizer_spec(spec: dict, key: str, where: str) -> None:
    """A `quantizer` mapping at `key`: a registered kind, and beside it only mappings named after
    kinds, each valid options of that kind (defaults filled in place)."""
    kind, kinds = spec["kind"], quantizer_kinds()
    if kind not in kinds:
        raise ConfigError(
            f"{where}: bad value at '{key}.kind': unknown quantizer kind {kind!r} "
            f"(known: {', '.join(kinds)})"
        )
    for name, options in spec.items():
        if name == "kind":
            continue
        if name not in kinds:
            hint = (
                f"options go under the kind: '{key}.{kind}.{name}'"
                if name in quantizer_class(kind).options
                else f"besides 'kind' only the options of a kind: {', '.join(kinds)}"
            )
            raise ConfigError(f"{where}: unknown key '{key}.{name}' ({hint})")
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: bad value at '{key}.{name}': options must be a mapping")
        validate(options, options_schema(name), where, prefix=f"{key}.{name}")


def _check_quantizers(cfg: dict, where: str) -> None:
    """Each schedule's quantizer: valid options, a K_max it can index, and its AR head."""
    section = cfg["tokenizer"]["quantizer"]
    section.setdefault(section["kind"], {})
    _check_quantizer_spec(section, "tokenizer.quantizer", where)
    for i, s in enumerate(cfg["schedules"]):
        spec = _deep_merge(section, s["quantizer"])
        kind = spec["kind"]
        spec.setdefault(kind, {})
        _check_quantizer_spec(spec, f"schedules.{i}.quantizer", where)
        cls = quantizer_class(kind)
        problem = cls.check_k_max(spec[kind], s["k_max"])
        if problem:
            raise ConfigError(
                f"{where}: bad value at 'schedules.{i}.k_max': {problem} "
                f"(quantizer kind {kind!r} of schedule '{s['name']}')"
            )
        head = s["ar_head"]
        if head == "softmax":
            continue
        if cls.ar_head is None or cls.ar_head.name != head:
            offered = ["softmax"] + ([cls.ar_head.name] if cls.ar_head else [])
            raise ConfigError(
                f"{where}: bad value at 'schedules.{i}.ar_head': {head!r} is not a head of "
                f"quantizer kind {kind!r} (schedule '{s['name']}' can use: {', '.join(offered)})"
            )
        if cfg["ar"]["prologue"]["num_tokens"]:
            raise ConfigError(
                f"{where}: schedules.{i}.ar_head: prologue tokens need the softmax head "
                "(set ar.prologue.num_tokens: 0 or ar_head: softmax)"
            )


def _derive_experiment_paths(cfg: dict) -> None:
    """Fill the per-experiment paths left null: an extending config never shares its parent's."""
    layout, eval_cfg = Layout.of(cfg), cfg["eval"]
    if eval_cfg["demo_weights"] is None:
        eval_cfg["demo_weights"] = layout.demo_features()
    if eval_cfg["cache_dir"] is None:
        eval_cfg["cache_dir"] = layout.eval_cache()


def _check_divisibility(cfg: dict, path: str | Path) -> None:
    """Shapes the models need: patches tile the image, attention heads split the width."""
    pairs = []
    if "model" in cfg.get("tokenizer", {}):
        m = cfg["tokenizer"]["model"]
        pairs += [
            ("tokenizer.model.image_size", m["image_size"], "patch_size", m["patch_size"]),
            ("tokenizer.model.enc_width", m["enc_width"], "enc_heads", m["enc_heads"]),
            ("tokenizer.model.dec_width", m["dec_width"], "dec_heads", m["dec_heads"]),
        ]
    if "model" in cfg.get("ar", {}):
        m = cfg["ar"]["model"]
        pairs.append(("ar.model.dim", m["dim"], "n_head", m["n_head"]))
    if "prologue" in cfg.get("ar", {}):
        p = cfg["ar"]["prologue"]
        pairs.append(("ar.prologue.width", p["width"], "heads", p["heads"]))
    for key, value, other, divisor in pairs:
        if value % divisor:
            raise ConfigError(
                f"{path}: bad value at '{key}': {value} is not divisible by {other} = {divisor}"
            )


def _check_batches(cfg: dict, where: str) -> None:
    """Each training loop splits its global batch evenly over its ranks (torchrun starts one per
    GPU of the rule's resources) and their accumulation micro-batches."""
    for rule, section in (("train_tokenizer", "tokenizer"), ("train_ar", "ar")):
        if "train" not in cfg.get(section, {}):
            continue
        spec = rule_spec(cfg, rule)
        ranks = max(spec["gpus"] * spec["nodes"], 1)
        batch, accum = cfg[section]["train"]["batch_size"], cfg[section]["train"]["grad_accum"]
        if batch % (ranks * accum):
            raise ConfigError(
                f"{where}: bad value at '{section}.train.batch_size': {batch} is not a multiple "
                f"of {ranks} rank(s) (resources.{rule}: gpus x nodes) x grad_accum {accum}"
            )


def _workflow_paths(cfg: dict) -> dict[str, str]:
    """The config's file and folder paths that become Snakemake inputs or outputs, by key."""
    paths = {f"paths.{k}": v for k, v in cfg["paths"].items()}
    paths["data.root"] = cfg["data"]["root"]
    paths["tokenizer.train.lpips_weights"] = cfg["tokenizer"]["train"]["lpips_weights"]
    for key in ("inception_weights", "demo_weights", "reference", "cache_dir"):
        paths[f"eval.{key}"] = cfg["eval"][key]
    paths["report.paper_numbers"] = cfg["report"]["paper_numbers"]
    for i, ref in enumerate(cfg["report"]["reference_configs"]):
        paths[f"report.reference_configs.{i}"] = ref
    return {k: v for k, v in paths.items() if v is not None}


def _check_workflow_paths(cfg: dict, where: str) -> None:
    """Paths the workflow can use: every rule quotes them for the shell, but Snakemake reads braces
    in a path as a wildcard and a line break would split its job listing."""
    for key, value in _workflow_paths(cfg).items():
        bad = sorted(set(value) & set("{}\n\r"))
        if bad:
            raise ConfigError(
                f"{where}: bad value at '{key}': {value!r} contains {bad[0]!r}, which Snakemake "
                "cannot take in a path (rename the folder)"
            )


def _check_preset_schedules(cfg: dict, names: set[str], path: str | Path) -> None:
    """Presets and grids may only name schedules that the experiment defines."""
    sampling = cfg.get("sampling", {})
    for kind in ("presets", "grids"):
        for i, item in enumerate(sampling.get(kind, [])):
            unknown = sorted(set(item.get("schedules", [])) - names)
            if unknown:
                raise ConfigError(
                    f"{path}: sampling.{kind}.{i}.schedules: unknown schedule(s) {unknown} "
                    f"(have: {sorted(names)})"
                )


def schedule(cfg: dict, name: str) -> dict:
    """The schedule entry called `name`."""
    for s in cfg["schedules"]:
        if s["name"] == name:
            return s
    raise ConfigError(f"no schedule named '{name}' (have: {[s['name'] for s in cfg['schedules']]})")


def k_sizes_for(cfg: dict, name: str) -> np.ndarray:
    """K_t of schedule `name` at the tokenizer's sequence length."""
    s = schedule(cfg, name)
    return schedule_k_sizes(
        s["kind"], s["k_min"], s["k_max"], cfg["tokenizer"]["num_tokens"], s["alpha"]
    )


def tokenizer_section(cfg: dict, name: str) -> dict:
    """The tokenizer section for schedule `name`; its `quantizer` resolved to `{kind: K, K:
    options}` (the schedule's overrides merged in, the kind's defaults filled)."""
    tok = copy.deepcopy(cfg["tokenizer"])
    spec = _deep_merge(tok["quantizer"], schedule(cfg, name).get("quantizer", {}))
    kind = spec["kind"]
    tok["quantizer"] = {"kind": kind, kind: validate(spec.get(kind, {}), options_schema(kind))}
    return tok
