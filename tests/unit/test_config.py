"""isplit.config: the schema is the one place defaults live; typed settings follow it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torchvision

from isplit import config
from isplit.nets import catalog


@pytest.mark.parametrize("section", sorted(config.SECTIONS))
def test_settings_fields_are_the_schema_keys(section):
    props = config._section_schema(section)["properties"]
    fields = {f.name for f in dataclasses.fields(config.SECTIONS[section])}
    assert fields == set(props), fields ^ set(props)


def test_settings_fields_are_typed_from_the_schema():
    fields = {f.name: f.type for f in dataclasses.fields(config.DatasetSettings)}
    assert fields["source"] == "str"  # required
    assert fields["url"] == "str | None"  # optional, no default: None when absent
    retrain = {f.name: f.type for f in dataclasses.fields(config.RetrainSettings)}
    assert retrain["quant_bits"] == "int | None" and retrain["seeds"] == "list"
    assert retrain["ratio"] == "float" and retrain["stages"] == "int"


def test_the_training_loop_reads_keys_both_training_sections_have():
    """TrainSettings is what fine-tuning and retraining share: every ``cfg.<key>`` the loop
    reads is a key of both sections."""
    import re

    from isplit.train import loop

    read = set(re.findall(r"\bcfg\.(\w+)", Path(loop.__file__).read_text()))
    assert {"epochs", "lr", "optimizer"} <= read
    for section in ("finetune", "retrain"):
        keys = set(config._section_schema(section)["properties"])
        assert read <= keys, (section, read - keys)


def test_defaults_come_from_the_schema_only():
    r = config.settings("retrain", {})
    assert (
        r.epochs
        == config.schema()["$defs"]["experiment"]["properties"]["retrain"]["properties"]["epochs"][
            "default"
        ]
    )
    lat = config.settings("latency", {})
    assert lat.device == {"profile": "rpi4-cpu"} and lat.server == {"profile": "xavier-gpu"}
    # a filled mapping and the settings object are interchangeable
    assert config.settings("retrain", r) is r
    assert config.settings("retrain", r.to_dict()) == r


def test_errors_name_the_key_path():
    with pytest.raises(config.ConfigError, match=r"^retrain.epochs: 'two' is not of type"):
        config.settings("retrain", {"epochs": "two"})
    with pytest.raises(config.ConfigError, match=r"experiments.e.retrain: .*'epoch' was unexp"):
        config.settings("retrain", {"epoch": 2}, where="experiments.e.retrain")
    with pytest.raises(config.ConfigError, match="expected retrain settings"):
        config.settings("retrain", config.settings("finetune", {}))


def test_cross_references_are_checked():
    good = {"datasets": {"d": {"source": "animal-mnist"}}, "experiments": {"e": {"dataset": "d"}}}
    config.check_experiments(good)
    bad = {**good, "experiments": {"e": {"dataset": "nope"}}}
    with pytest.raises(config.ConfigError, match="experiments.e.dataset: 'nope' is not a key"):
        config.check_experiments(bad)
    folder = {"datasets": {"d": {"source": "imagefolder"}}, "experiments": {}}
    with pytest.raises(config.ConfigError, match="datasets.d.path is required"):
        config.check_experiments(folder)


def test_model_catalog_is_torchvision_registry(tmp_path):
    """The torch-free name list the workflow checks at parse time is torchvision's registry of
    classifiers; the other spellings are checked for form, file and callable without
    importing anything."""
    names = torchvision.models.list_models(module=torchvision.models)
    assert tuple(sorted(names)) == tuple(sorted(catalog.MODEL_NAMES))
    with pytest.raises(ValueError, match="experiments.e.model: 'resnet9000' is not a torchvision"):
        catalog.check_model("resnet9000", "experiments.e.model")
    assert catalog.check_model("timm:resnet18") == "timm:resnet18"
    with pytest.raises(ValueError, match="is not timm:<model name>"):
        catalog.check_model("timm:")
    net = tmp_path / "net.py"
    net.write_text("import torch\n\ndef build(num_classes=3):\n    raise SystemExit\n")
    spec = catalog.check_model("python:net.py:build", "m", search=[tmp_path])
    assert spec == f"python:{net}:build"  # resolved beside the config, nothing run
    with pytest.raises(ValueError, match="m: .*defines no 'make' at its top level"):
        catalog.check_model("python:net.py:make", "m", search=[tmp_path])
    with pytest.raises(ValueError, match="m: python model file 'gone.py' does not exist"):
        catalog.check_model("python:gone.py:build", "m", search=[tmp_path])
    with pytest.raises(ValueError, match="is not python:<file.py>:<callable>"):
        catalog.check_model("python:net.py", "m", search=[tmp_path])
