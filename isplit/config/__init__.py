"""The one config layer: ``schema.yaml`` (beside this file) holds every key, its type and its
default; this module fills the defaults from it once and hands each stage typed settings.

The workflow validates the whole config against the same file (``workflow/schemas/
config.schema.yaml`` is a link to it), so a default is written in exactly one place. A stage
called directly (tests, notebooks, ``isplit <step> --config '{...}'``) gets its section through
:func:`settings`, which fills the missing keys from the schema and rejects unknown ones with
the key's path, exactly as the workflow does.

Torch-free and cheap: the Snakefile imports it at parse time.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names its path."""


@functools.cache
def schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def _section_schema(section: str) -> dict:
    root = schema()
    if section in root["properties"] and section not in ("datasets", "experiments"):
        sub = root["properties"][section]
    elif section == "dataset":
        sub = root["$defs"]["dataset"]
    elif section in root["$defs"]["experiment"]["properties"]:
        sub = root["$defs"]["experiment"]["properties"][section]
    else:
        raise ConfigError(f"no config section {section!r} in {SCHEMA_PATH.name}")
    return {"$defs": root["$defs"], **sub}


@functools.cache
def _validator_class():
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_then_check(validator, properties, instance, sub):
        # defaults first, so nested objects defaulted to {} get their own defaults in turn
        if isinstance(instance, dict):
            for key, prop in properties.items():
                if "default" in prop and key not in instance:
                    instance[key] = copy.deepcopy(prop["default"])
        yield from check_properties(validator, properties, instance, sub)

    return validators.extend(Draft202012Validator, {"properties": fill_then_check})


def _path(parts) -> str:
    return ".".join(str(p) for p in parts)


def fill(section: str, cfg: Mapping | None, *, where: str | None = None) -> dict:
    """A copy of ``cfg`` (a section of the config) with the schema's defaults filled in.

    Raises :class:`ConfigError` naming the first offending key (``where`` prefixes the path,
    e.g. ``experiments.e.retrain``)."""
    out = copy.deepcopy(dict(cfg or {}))
    validator = _validator_class()(_section_schema(section))
    errors = sorted(validator.iter_errors(out), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        path = _path([where or section, *e.absolute_path])
        raise ConfigError(f"{path}: {e.message}")
    return out


# ----------------------------------------------------------------------------- typed settings


@dataclass(frozen=True)
class Settings:
    """Base of the typed sections: built only through :func:`settings` (defaults filled)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class InputSettings(Settings):
    image_size: int
    grayscale_to_rgb: bool
    normalize: str

    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the tensor the network receives: grey images are repeated to RGB."""
        return (3, self.image_size, self.image_size)


@dataclass(frozen=True)
class TrainSettings(Settings):
    """What the training loop reads; fine-tuning and retraining add their own keys."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    optimizer: str
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    schedule: str
    warmup: float
    step_epochs: int
    gamma: float
    label_smoothing: float
    class_weights: str
    grad_clip: float | None
    augment: str
    train_subset: int | None
    eval_subset: int | None
    num_workers: int
    drop_last: bool


@dataclass(frozen=True)
class FinetuneSettings(TrainSettings):
    freeze_backbone: bool


@dataclass(frozen=True)
class RetrainSettings(TrainSettings):
    bottleneck: str
    ratio: float
    stages: int
    quant_bits: int | None
    code_bytes: int
    recon_weight: float
    classifier_epochs: int
    classifier_lr: float
    seeds: list

    def bottleneck_spec(self) -> dict:
        """What rebuilds the bottleneck's architecture (saved with each split model)."""
        keys = ("bottleneck", "ratio", "stages", "quant_bits", "code_bytes")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class ImportanceSettings(Settings):
    variant: str
    target: str | None
    channel_reduce: str
    split: str
    max_images: int | None
    batch_size: int
    num_workers: int
    row_group_rows: int
    probe_train_images: int | None

    @property
    def resolved_target(self) -> str:
        """The logit explained: the configured one, else the variant's own."""
        if self.target is not None:
            return self.target
        return "pred" if self.variant == "public-code" else "label"


@dataclass(frozen=True)
class CandidatesSettings(Settings):
    mode: str
    exclude_first: int
    exclude_last: int
    per_class: bool
    ends: bool


@dataclass(frozen=True)
class LatencySettings(Settings):
    profiles: list | None
    losses: list | None
    protocols: list
    n_frames: int
    fps: float | None
    payload: int
    tcp: str
    rto_s: float
    dupacks: int
    window: int | None
    initial_window: int | None
    slow_start_after_idle: bool | None
    delayed_ack: bool | None
    loss_model: dict
    answer_bytes: int
    cross_traffic: float
    queue: int | None
    simulator: str
    n_boot: int
    device: dict
    server: dict
    compute_stat: str
    repeats: int
    warmup: int
    threads: int


@dataclass(frozen=True)
class QosSettings(Settings):
    max_p95_s: float | None
    min_accuracy: float | None
    classes: list | None
    max_device_params: float | None
    max_device_flops: float | None
    max_frame_loss: float | None
    include_endpoints: bool


@dataclass(frozen=True)
class CameraSettings(Settings):
    jpeg_qualities: list


@dataclass(frozen=True)
class DatasetSettings(Settings):
    source: str
    url: str | None
    sha256: str | None
    variant: str
    task: str
    path: str | None
    val_from_train: float
    split: dict


@dataclass(frozen=True)
class DownloadSettings(Settings):
    timeout_s: float
    retries: int
    retry_budget_s: float
    max_member_mb: float
    max_unpacked_mb: float
    max_ratio: float


SECTIONS: dict[str, type[Settings]] = {
    "input": InputSettings,
    "finetune": FinetuneSettings,
    "retrain": RetrainSettings,
    "importance": ImportanceSettings,
    "candidates": CandidatesSettings,
    "latency": LatencySettings,
    "qos": QosSettings,
    "camera": CameraSettings,
    "dataset": DatasetSettings,
    "downloads": DownloadSettings,
}


def settings(section: str, cfg: Mapping | Settings | None = None, *, where: str | None = None):
    """The typed settings of ``section`` from a (possibly partial) mapping; a Settings object
    of the right type is returned as it is. Optional keys the schema leaves without a default
    (``url``, ``sha256``, ``path``) are None when absent."""
    if section not in SECTIONS:
        raise ConfigError(f"no typed settings for section {section!r}; known: {sorted(SECTIONS)}")
    cls = SECTIONS[section]
    if isinstance(cfg, cls):
        return cfg
    if isinstance(cfg, Settings):
        raise ConfigError(f"expected {section} settings, got {type(cfg).__name__}")
    filled = fill(section, cfg, where=where)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {n: filled.get(n) for n in names}
    return cls(**values)


def check_experiments(config: Mapping) -> None:
    """Cross-references the schema cannot express: each experiment's dataset is a configured
    one, an imagefolder dataset has a path."""
    datasets = config["datasets"]
    for name, exp in config["experiments"].items():
        if exp["dataset"] not in datasets:
            raise ConfigError(
                f"experiments.{name}.dataset: {exp['dataset']!r} is not a key of datasets "
                f"(known: {', '.join(sorted(datasets))})"
            )
    for name, ds in datasets.items():
        if ds["source"] == "imagefolder" and not ds.get("path"):
            raise ConfigError(f"datasets.{name}.path is required for source imagefolder")
