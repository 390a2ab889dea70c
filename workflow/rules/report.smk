rule plot_cui:
    input:
        curve="results/{exp}/cui/curve.parquet",
        candidates="results/{exp}/candidates_all.tsv",
    output:
        report(
            "results/{exp}/figures/cui_curve.png",
            caption="../report/cui_curve.rst",
            category="{exp}",
            subcategory="1. importance",
            labels={"experiment": "{exp}", "figure": "CUI curve"},
        ),
        "results/{exp}/figures/cui_curve.pdf",
        report(
            "results/{exp}/figures/cui_per_class.png",
            caption="../report/cui_per_class.rst",
            category="{exp}",
            subcategory="1. importance",
            labels={"experiment": "{exp}", "figure": "CUI per class"},
        ),
        "results/{exp}/figures/cui_per_class.pdf",
    log:
        "logs/plot_cui/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        out="results/{exp}/figures",
        code=code_version("plot-cui"),
    shell:
        "python -m isplit plot-cui --curve {input.curve:q}"
        " --candidates-all {input.candidates:q} --out {params.out:q} > {log:q} 2>&1"


rule plot_splits:
    input:
        splits="results/{exp}/splits.parquet",
        curve="results/{exp}/cui/curve.parquet",
        candidates="results/{exp}/candidates_all.tsv",
        quality="results/{exp}/quality.json",
        camera="results/{exp}/camera/camera.parquet",
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
        report(
            "results/{exp}/figures/predictors.png",
            caption="../report/predictors.rst",
            category="{exp}",
            subcategory="2. splits",
            labels={"experiment": "{exp}", "figure": "predictors of accuracy"},
        ),
        "results/{exp}/figures/predictors.pdf",
    log:
        "logs/plot_splits/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        out="results/{exp}/figures",
        code=code_version("plot-splits"),
    shell:
        "python -m isplit plot-splits --splits {input.splits:q} --curve {input.curve:q}"
        " --candidates-all {input.candidates:q} --quality {input.quality:q}"
        " --camera {input.camera:q} --out {params.out:q} > {log:q} 2>&1"


rule plot_latency:
    input:
        latency="results/{exp}/latency.parquet",
        recommendation="results/{exp}/recommendation.json",
        splits="results/{exp}/splits.parquet",
    output:
        report(
            "results/{exp}/figures/latency_accuracy.png",
            caption="../report/latency_accuracy.rst",
            category="{exp}",
            subcategory="3. latency",
            labels={"experiment": "{exp}", "figure": "latency vs accuracy"},
        ),
        "results/{exp}/figures/latency_accuracy.pdf",
    log:
        "logs/plot_latency/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        out="results/{exp}/figures",
        code=code_version("plot-latency"),
    shell:
        "python -m isplit plot-latency --latency {input.latency:q}"
        " --recommendation {input.recommendation:q} --splits {input.splits:q}"
        " --out {params.out:q} > {log:q} 2>&1"


rule summary:
    input:
        deploy=deploy_dirs,
        splits="results/{exp}/splits.parquet",
        quality="results/{exp}/quality.json",
        finetune="results/{exp}/finetune/metrics.json",
        recommendation="results/{exp}/recommendation.json",
        baseline="results/{exp}/baseline.json",
        camera="results/{exp}/camera/camera.parquet",
    output:
        report(
            "results/{exp}/summary.md",
            caption="../report/summary.rst",
            category="{exp}",
            subcategory="0. summary",
            labels={"experiment": "{exp}", "table": "summary"},
        ),
    log:
        "logs/summary/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_version("summary"),
    shell:
        "python -m isplit summary --experiment {wildcards.exp:q} --splits {input.splits:q}"
        " --quality {input.quality:q} --finetune-metrics {input.finetune:q}"
        " --recommendation {input.recommendation:q} --baseline {input.baseline:q}"
        " --camera {input.camera:q} --out {output:q} {input.deploy:q}"
        " > {log:q} 2>&1"
