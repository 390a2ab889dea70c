import copy
import hashlib
import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

# The package lives beside the Snakefile: the parser and every job (conda and cluster jobs
# too) import it from there, so it runs without an install step.
sys.path.insert(0, workflow.basedir)
# Set as a shell prefix, not a param: moving the checkout must not rerun anything.
shell.prefix(
    "set -euo pipefail; export PYTHONPATH={}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ".format(
        shlex.quote(workflow.basedir)
    )
)

# Only stdlib-only modules of the package are imported at parse time (no torch).
from isplit import __version__ as isplit_version  # noqa: E402
from isplit import datasets as isplit_datasets  # noqa: E402
from isplit import weights as isplit_weights  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")
# defaults come from shared objects in the schema: give every experiment its own copy
config = copy.deepcopy(config)
DATASETS = config["datasets"]
EXPERIMENTS = config["experiments"]
DOWNLOADS = config["downloads"]

for _name, _exp in EXPERIMENTS.items():
    if _exp["dataset"] not in DATASETS:
        raise ValueError(
            f"experiments.{_name}.dataset: {_exp['dataset']!r} is not a key of datasets "
            f"(known: {', '.join(sorted(DATASETS))})"
        )
for _name, _ds in DATASETS.items():
    if _ds["source"] == "imagefolder" and not _ds.get("path"):
        raise ValueError(f"datasets.{_name}.path is required for source imagefolder")


def one_of(names):
    """Wildcard constraint matching exactly the configured names."""
    return "|".join(map(re.escape, names))


def as_json(obj):
    """A config slice as the JSON string given to the CLI, keys sorted so params are stable."""
    return json.dumps(obj, sort_keys=True)


def code_version(*modules):
    """Package version plus a hash of the sources a rule runs, so editing one of those
    modules reruns the rules that use it (Snakemake's code trigger does not see imports).
    """
    h = hashlib.sha256()
    pkg = Path(workflow.basedir) / "isplit"
    for mod in ("__init__",) + modules:
        path = pkg / mod
        files = (
            sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        )
        for f in files:
            h.update(f.relative_to(pkg).as_posix().encode())
            h.update(f.read_bytes())
    return f"{isplit_version}+{h.hexdigest()[:12]}"


# ----------------------------------------------------------------------------- datasets


def download_path(dataset):
    name = isplit_datasets.download_filename(DATASETS[dataset])
    return f"resources/downloads/{dataset}/{name}" if name else None


def dataset_download_cfg(wildcards):
    return as_json(DATASETS[wildcards.dataset])


def prepare_inputs(wildcards):
    ds = DATASETS[wildcards.dataset]
    if ds["source"] == "imagefolder":
        return {"folder": ds["path"]}
    return {"archive": download_path(wildcards.dataset)}


def prepare_archive_arg(wildcards, input):
    return f"--archive {input.archive!r}" if "archive" in input.keys() else ""


def dataset_dir(dataset):
    return f"resources/datasets/{dataset}"


# ----------------------------------------------------------------------------- weights


def weights_file(exp):
    """The weights input of an experiment's fine-tuning, or None."""
    e = EXPERIMENTS[exp]
    kind = isplit_weights.kind(e["weights"])
    if kind == "none":
        return None
    if kind == "path":
        return e["weights"]
    return f"resources/weights/{e['model']}/{isplit_weights.slug(e['weights'])}.pth"


WEIGHT_SPECS = {
    (e["model"], isplit_weights.slug(e["weights"])): e["weights"]
    for e in EXPERIMENTS.values()
    if isplit_weights.kind(e["weights"]) in ("imagenet", "pypi")
}


def weights_spec(wildcards):
    return WEIGHT_SPECS[(wildcards.model, wildcards.wslug)]


# ----------------------------------------------------------------------------- experiments


def exp_cfg(section):
    """Params function: the experiment's ``section`` as JSON."""
    return lambda wildcards: as_json(EXPERIMENTS[wildcards.exp][section])


def exp_value(key):
    return lambda wildcards: EXPERIMENTS[wildcards.exp][key]


def finetune_inputs(wildcards):
    e = EXPERIMENTS[wildcards.exp]
    inputs = {"dataset": dataset_dir(e["dataset"])}
    w = weights_file(wildcards.exp)
    if w:
        inputs["weights"] = w
    return inputs


def weights_arg(wildcards, input):
    return input.weights if "weights" in input.keys() else "none"


def experiment_dataset(wildcards):
    return dataset_dir(EXPERIMENTS[wildcards.exp]["dataset"])


def experiment_model_and_data(wildcards):
    return {
        "model": f"results/{wildcards.exp}/finetune/model.pt",
        "dataset": experiment_dataset(wildcards),
    }


def candidate_layers(wildcards):
    """The split points chosen by the select_candidates checkpoint (re-evaluated after it)."""
    path = checkpoints.select_candidates.get(exp=wildcards.exp).output[0]
    with open(path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        col = header.index("layer")
        return [line.rstrip("\n").split("\t")[col] for line in fh if line.strip()]


def split_metrics(wildcards):
    return [
        f"results/{wildcards.exp}/splits/{layer}/metrics.json"
        for layer in candidate_layers(wildcards)
    ]


def split_models(wildcards):
    return [
        f"results/{wildcards.exp}/splits/{layer}/model.pt"
        for layer in candidate_layers(wildcards)
    ]


def deploy_dirs(wildcards):
    return [
        f"results/{wildcards.exp}/deploy/{layer}"
        for layer in candidate_layers(wildcards)
    ]


def latency_value(key):
    return lambda wildcards: EXPERIMENTS[wildcards.exp]["latency"][key]


def final_targets():
    targets = []
    for exp in EXPERIMENTS:
        targets += [
            f"results/{exp}/finetune/metrics.json",
            f"results/{exp}/figures/cui_curve.png",
            f"results/{exp}/quality.json",
            f"results/{exp}/figures/accuracy_by_split.png",
            f"results/{exp}/figures/latency_accuracy.png",
            f"results/{exp}/summary.md",
        ]
    return targets
