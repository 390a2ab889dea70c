import os

from snakemake.utils import min_version

min_version("9.1.0")


# the default experiment, unless the command line names its own config file(s)
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset=one_of(DATASETS),
    exp=one_of(EXPERIMENTS),
    layer=r"[A-Za-z0-9_.\-]+",


include: "workflow/rules/datasets.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/importance.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/latency.smk"


rule all:
    default_target: True
    input:
        final_targets(),
