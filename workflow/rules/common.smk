import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

# Snakemake imports the package from beside the Snakefile; jobs run `python -m isplit` and need
# an interpreter where this checkout is installed (with its dependencies).
import isplit

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
# a python: model's file is looked for in the repository, then beside the config files; each
# model is then built and traced once in a subprocess (cached), so one that cannot be split
# fails here, not after the download
_MODEL_SEARCH = [workflow.basedir, *(str(Path(f).parent) for f in workflow.configfiles)]
for _name, _exp in EXPERIMENTS.items():
    _where = f"experiments.{_name}.model"
    _exp["model"] = isplit_catalog.check_model(_exp["model"], _where, _MODEL_SEARCH)
    isplit_weights.check_spec(
        _exp["weights"], f"experiments.{_name}.weights", model=_exp["model"]
    )
    isplit_catalog.check_graph(_exp["model"], _exp["input"]["image_size"], _where)
    # this machine as the device: the measured onnxruntime profile is its timing table
    if _exp["latency"]["server"] == "measured":
        raise ValueError(
            f"experiments.{_name}.latency.server: 'measured' times device halves only"
        )
    if _exp["latency"]["device"] == "measured":
        _exp["latency"]["device"] = {
            "table": f"results/{_name}/latency/measured.parquet"
        }

# Jobs need a `python` where this checkout is installed. Started from a venv that is not on
# PATH, the shell finds the system python instead; then the interpreter running Snakemake is put
# first. A conda job's env (which installs this checkout) passes the check as it is. If neither
# works the job stops at once, saying what to do. A shell prefix, not a param: moving the
# checkout must not rerun anything. Importing isplit is not enough: run from the checkout, any
# python finds the package and its egg-info in the working directory, so the check also asks
# for every installed requirement.
_ISPLIT_CHECK = shlex.quote(
    "import importlib.metadata as m, os, re, sys, isplit; "
    "[m.version(re.match(r'[A-Za-z0-9_.-]+', r)[0]) "
    "for r in m.requires('isplit') or [] if 'extra ==' not in r]; "
    "sys.exit(os.path.realpath(isplit.__file__) != sys.argv[1])"
)
_ISPLIT_INIT = shlex.quote(str(Path(isplit.__file__).resolve()))
_NO_ISPLIT = shlex.quote(
    f"isplit: no python on PATH has this checkout ({workflow.basedir}) installed; run "
    "`make venv` and start .venv/bin/snakemake, or use --sdm conda"
)
shell.prefix(
    "set -euo pipefail; "
    f"if ! python -c {_ISPLIT_CHECK} {_ISPLIT_INIT} 2>/dev/null; then "
    f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
    # doubled braces: Snakemake formats the prefix like a shell command
    f"python -c {_ISPLIT_CHECK} {_ISPLIT_INIT} 2>/dev/null "
    f"|| {{{{ echo {_NO_ISPLIT} >&2; exit 1; }}}}; "
    "fi; "
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


def eval_subset_arg(wildcards):
    """The images fine-tuning scored the model on, so the camera options are scored on them."""
    n = EXPERIMENTS[wildcards.exp]["finetune"]["eval_subset"]
    return f"--eval-subset {n}" if n else ""


def retrain_cfg(wildcards):
    """The retraining section without ``seeds`` (they are their own param)."""
    section = EXPERIMENTS[wildcards.exp]["retrain"]
    return as_json({k: v for k, v in section.items() if k != "seeds"})


def retrain_seeds(wildcards):
    """The retraining seeds of the experiment, as the CLI takes them (one job trains them
    all, reusing the data and the frozen head's outputs)."""
    return ",".join(str(s) for s in EXPERIMENTS[wildcards.exp]["retrain"]["seeds"])


def exp_value(key):
    return lambda wildcards: EXPERIMENTS[wildcards.exp][key]


def finetune_inputs(wildcards):
    e = EXPERIMENTS[wildcards.exp]
    inputs = {"dataset": dataset_dir(e["dataset"])}
    if (
        isplit_catalog.kind(e["model"]) == "python"
    ):  # editing the network reruns from here
        inputs["network"] = isplit_catalog.python_parts(e["model"])[0]
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
    """Input function: ``<name>`` of every candidate's retraining job."""

    def files(wildcards):
        return [
            f"results/{wildcards.exp}/splits/{layer}/{name}"
            for layer in candidate_layers(wildcards)
        ]

    return files


def exported_model(wildcards):
    """The split model a candidate's export starts from: its first seed's."""
    return f"results/{wildcards.exp}/splits/{wildcards.layer}/model.pt"


def deploy_dirs(wildcards):
    return [
        f"results/{wildcards.exp}/deploy/{layer}"
        for layer in candidate_layers(wildcards)
    ]


def probe_inputs(wildcards):
    """The probe predictors' table and outcomes, when the experiment asks for probes."""
    if EXPERIMENTS[wildcards.exp]["importance"]["probe_train_images"] is None:
        return {}
    return {
        "probe": f"results/{wildcards.exp}/importance/probe.parquet",
        "probe_outcomes": f"results/{wildcards.exp}/importance/probe_outcomes.parquet",
    }


def probe_arg(wildcards, input):
    if "probe" not in input.keys():
        return ""
    return (
        f"--probe {shlex.quote(input.probe)}"
        f" --probe-outcomes {shlex.quote(input.probe_outcomes)}"
    )


def code_bytes(wildcards):
    """The fixed code size the probe on the 8-bit code assumes (the ``budget`` setting)."""
    return EXPERIMENTS[wildcards.exp]["retrain"]["code_bytes"]


def latency_value(key):
    return lambda wildcards: EXPERIMENTS[wildcards.exp]["latency"][key]


def measured_eval_images(wildcards):
    """The validation and test images the measured profile scores: those retraining scores."""
    n = EXPERIMENTS[wildcards.exp]["retrain"]["eval_subset"]
    return f"--eval-images {n}" if n else ""


def measured_table(exp):
    return f"results/{exp}/latency/measured.parquet"


def local_compute_table(wildcards):
    """The timing table simulate_latency reads as this machine's: compute.parquet when a side
    is timed with scale or a table of its own, else the measured profile when the device is
    this machine (``device: measured``), else none."""
    lat = EXPERIMENTS[wildcards.exp]["latency"]
    measured = measured_table(wildcards.exp)
    sides = [lat[s] for s in ("device", "server")]
    if any("scale" in s or s.get("table", measured) != measured for s in sides):
        return [f"results/{wildcards.exp}/latency/compute.parquet"]
    return [measured] if any(s.get("table") == measured for s in sides) else []


def image_size(wildcards):
    """The side of the square input the experiment's network takes."""
    return EXPERIMENTS[wildcards.exp]["input"]["image_size"]


def compute_arg(wildcards, input):
    """``--compute`` with this machine's timing table, when local_compute_table gives one."""
    return f"--compute {shlex.quote(str(input.compute))}" if input.compute else ""


def latency_tables(wildcards):
    """Compute tables measured on a real device or server: read by the simulation, so
    declared as its inputs (editing one reruns the latency stage)."""
    lat = EXPERIMENTS[wildcards.exp]["latency"]
    return [s["table"] for s in (lat["device"], lat["server"]) if s.get("table")]


# ----------------------------------------------------------------------------- report

#: The figures of an experiment, keyed by the drawing rule; for each, the report section they go
#: to, and each figure's stem and label. A figure is ``<stem>.png`` (in the report, captioned
#: by workflow/report/<stem>.rst) and ``<stem>.pdf``, under results/<exp>/figures/.
FIGURES = {
    "plot_cui": (
        "1. importance",
        {"cui_curve": "CUI curve", "cui_per_class": "CUI per class"},
    ),
    "plot_splits": (
        "2. splits",
        {
            "accuracy_by_split": "accuracy per split",
            "cui_vs_accuracy": "CUI vs accuracy",
            "accuracy_vs_bytes": "accuracy vs bytes",
            "per_class_accuracy": "per-class accuracy",
            "predictors": "predictors of accuracy",
        },
    ),
    "plot_latency": ("3. latency", {"latency_accuracy": "latency vs accuracy"}),
}


def in_report(path, caption, subcategory, labels):
    """``path`` as an entry of the experiment's section of the HTML report."""
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category="{exp}",
        subcategory=subcategory,
        labels={"experiment": "{exp}", **labels},
    )


def figure_outputs(rule):
    """The named outputs of a figure rule: ``<stem>`` (the PNG, in the report) and
    ``<stem>_pdf`` of each figure :data:`FIGURES` gives it."""
    subcategory, figures = FIGURES[rule]
    out = {}
    for stem, label in figures.items():
        png = f"results/{{exp}}/figures/{stem}.png"
        out[stem] = in_report(png, stem, subcategory, {"figure": label})
        out[f"{stem}_pdf"] = f"results/{{exp}}/figures/{stem}.pdf"
    return out


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
            f"results/{exp}/camera/camera.parquet",
            measured_table(exp),
        ]
    return targets
