from snakemake.utils import min_version

min_version("9.1.0")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset=one_of(DATASETS),
    exp=one_of(EXPERIMENTS),
    layer=r"[A-Za-z0-9_.\-]+",
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/importance.smk"
include: "workflow/rules/camera.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/latency.smk"
include: "workflow/rules/deploy.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_targets(),
