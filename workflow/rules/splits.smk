rule retrain_split:
    input:
        unpack(experiment_model_and_data),
    output:
        model="results/{exp}/splits/{layer}/model.pt",
        metrics="results/{exp}/splits/{layer}/metrics.json",
    log:
        "logs/retrain_split/{exp}/{layer}.log",
    benchmark:
        "benchmarks/retrain_split/{exp}/{layer}.tsv"
    conda:
        "../envs/isplit.yaml"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        cfg=exp_cfg("retrain"),
        seed=exp_value("seed"),
        out="results/{exp}/splits/{layer}",
        code=code_version("retrain", "split", "train", "models", "datasets/loader.py"),
    shell:
        "python -m isplit retrain-split --model {input.model:q} --dataset {input.dataset:q}"
        " --layer {wildcards.layer:q} --config {params.cfg:q} --seed {params.seed}"
        " --out {params.out:q} --threads {threads} > {log:q} 2>&1"


rule gather_splits:
    input:
        candidates="results/{exp}/candidates.tsv",
        finetune="results/{exp}/finetune/metrics.json",
        dataset=experiment_dataset,
        metrics=split_metrics,
    output:
        splits="results/{exp}/splits.parquet",
        quality="results/{exp}/quality.json",
    log:
        "logs/gather_splits/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("quality"),
    shell:
        "python -m isplit gather-splits --candidates {input.candidates:q}"
        " --finetune-metrics {input.finetune:q} --dataset {input.dataset:q}"
        " --splits-out {output.splits:q} --quality-out {output.quality:q}"
        " {input.metrics:q} > {log:q} 2>&1"


rule plot_splits:
    input:
        splits="results/{exp}/splits.parquet",
        curve="results/{exp}/cui/curve.parquet",
        candidates="results/{exp}/candidates.tsv",
        quality="results/{exp}/quality.json",
    output:
        report(
            "results/{exp}/figures/accuracy_by_split.png",
            caption="../report/accuracy_by_split.rst",
            category="{exp}",
            subcategory="2. splits",
            labels={"experiment": "{exp}", "figure": "accuracy per split"},
        ),
        "results/{exp}/figures/accuracy_by_split.pdf",
        report(
            "results/{exp}/figures/cui_vs_accuracy.png",
            caption="../report/cui_vs_accuracy.rst",
            category="{exp}",
            subcategory="2. splits",
            labels={"experiment": "{exp}", "figure": "CUI vs accuracy"},
        ),
        "results/{exp}/figures/cui_vs_accuracy.pdf",
        report(
            "results/{exp}/figures/accuracy_vs_bytes.png",
            caption="../report/accuracy_vs_bytes.rst",
            category="{exp}",
            subcategory="2. splits",
            labels={"experiment": "{exp}", "figure": "accuracy vs bytes"},
        ),
        "results/{exp}/figures/accuracy_vs_bytes.pdf",
        report(
            "results/{exp}/figures/per_class_accuracy.png",
            caption="../report/per_class_accuracy.rst",
            category="{exp}",
            subcategory="2. splits",
            labels={"experiment": "{exp}", "figure": "per-class accuracy"},
        ),
        "results/{exp}/figures/per_class_accuracy.pdf",
    log:
        "logs/plot_splits/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        out="results/{exp}/figures",
        code=code_version("plots"),
    shell:
        "python -m isplit plot-splits --splits {input.splits:q} --curve {input.curve:q}"
        " --candidates {input.candidates:q} --quality {input.quality:q} --out {params.out:q}"
        " > {log:q} 2>&1"


rule export_split:
    input:
        "results/{exp}/splits/{layer}/model.pt",
    output:
        directory("results/{exp}/deploy/{layer}"),
    log:
        "logs/export_split/{exp}/{layer}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_version("export", "retrain", "split", "models"),
    shell:
        "python -m isplit export --split {input:q} --out {output:q} > {log:q} 2>&1"
