import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

# The rules run `python -m isplit`, so the package must be installed where Snakemake runs
# (make venv, or conda env create -f environment.yml) and be this checkout's.
try:
    import isplit
except ImportError:
    sys.exit(
        f"isplit is not installed for {sys.executable}: run `make venv` and start "
        f".venv/bin/snakemake, or `pip install -e {workflow.basedir}` into this environment"
    )
if Path(isplit.__file__).resolve().parent != Path(workflow.basedir, "isplit").resolve():
    sys.exit(
        f"snakemake imports isplit from {Path(isplit.__file__).parent}, not from this "
        f"checkout ({workflow.basedir}): `pip install -e {workflow.basedir}` into "
        f"{sys.prefix}"
    )

# Parse time stays torch-free: these modules import only the standard library and the config.
from isplit.cli.provenance import code_version
from isplit.config import check_experiments
from isplit.data import sources as isplit_sources
from isplit.nets import catalog as isplit_catalog
from isplit.nets import weights as isplit_weights

validate(config, schema="../schemas/config.schema.yaml")
check_experiments(config)

DATASETS = config["datasets"]
EXPERIMENTS = config["experiments"]
DOWNLOADS = config["downloads"]
for _name, _exp in EXPERIMENTS.items():
    isplit_catalog.check_model_name(_exp["model"], f"experiments.{_name}.model")
    isplit_weights.check_spec(_exp["weights"], f"experiments.{_name}.weights")

# Jobs need a `python` that imports this checkout's isplit. Started from a venv that is not on
# PATH, the shell finds the system python instead; then the interpreter running Snakemake is
# put first. A conda job's env (isplit installed from this checkout) passes the check as is.
# A shell prefix, not a param: moving the checkout must not rerun anything.
_ISPLIT_INIT = shlex.quote(str(Path(isplit.__file__).resolve()))
shell.prefix(
    "set -euo pipefail; "
    "python -c 'import isplit, os, sys; sys.exit(os.path.realpath(isplit.__file__) != sys.argv[1])' "
    f"{_ISPLIT_INIT} "
    f"2>/dev/null || export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
)


def one_of(names):
    """Wildcard constraint matching exactly the configured names."""
    return "|".join(map(re.escape, names))


def as_json(obj):
    """A config section as the JSON string given to the CLI, keys sorted so params are stable."""
    return json.dumps(obj, sort_keys=True)


# ----------------------------------------------------------------------------- datasets


def download_path(dataset):
    name = isplit_sources.download_filename(DATASETS[dataset])
    return f"resources/downloads/{dataset}/{name}" if name else None


def dataset_cfg(wildcards):
    return as_json(DATASETS[wildcards.dataset])


def prepare_inputs(wildcards):
    ds = DATASETS[wildcards.dataset]
    if ds["source"] == "imagefolder":
        return {"folder": ds["path"]}
    return {"archive": download_path(wildcards.dataset)}


def prepare_archive_arg(wildcards, input):
    return (
        f"--archive {shlex.quote(input.archive)}" if "archive" in input.keys() else ""
    )


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
    path = checkpoints.select_candidates.get(exp=wildcards.exp).output.selected
    with open(path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        col = header.index("layer")
        return [line.rstrip("\n").split("\t")[col] for line in fh if line.strip()]


def split_files(name):
    """Input function: ``results/<exp>/splits/<layer>/<name>`` of every candidate."""

    def files(wildcards):
        return [
            f"results/{wildcards.exp}/splits/{layer}/{name}"
            for layer in candidate_layers(wildcards)
        ]

    return files


def deploy_dirs(wildcards):
    return [
        f"results/{wildcards.exp}/deploy/{layer}"
        for layer in candidate_layers(wildcards)
    ]


def latency_value(key):
    return lambda wildcards: EXPERIMENTS[wildcards.exp]["latency"][key]


def latency_tables(wildcards):
    """Compute tables measured on a real device or server: read by the simulation, so
    declared as its inputs (editing one reruns the latency stage)."""
    lat = EXPERIMENTS[wildcards.exp]["latency"]
    return [s["table"] for s in (lat["device"], lat["server"]) if s.get("table")]


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
