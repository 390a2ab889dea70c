rule plot_cui:
    input:
        curve="results/{exp}/cui/curve.parquet",
        candidates="results/{exp}/candidates_all.tsv",
    output:
        **figure_outputs("plot_cui"),
    log:
        "logs/plot_cui/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("plot-cui"),
    shell:
        "python -m isplit plot-cui --curve {input.curve:q}"
        " --candidates-all {input.candidates:q}"
        " --cui-curve {output.cui_curve:q} --cui-curve {output.cui_curve_pdf:q}"
        " --cui-per-class {output.cui_per_class:q}"
        " --cui-per-class {output.cui_per_class_pdf:q} > {log:q} 2>&1"


rule plot_splits:
    input:
        splits="results/{exp}/splits.parquet",
        curve="results/{exp}/cui/curve.parquet",
        candidates="results/{exp}/candidates_all.tsv",
        quality="results/{exp}/quality.json",
        camera="results/{exp}/camera/camera.parquet",
    output:
        **figure_outputs("plot_splits"),
    log:
        "logs/plot_splits/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("plot-splits"),
    shell:
        "python -m isplit plot-splits --splits {input.splits:q} --curve {input.curve:q}"
        " --candidates-all {input.candidates:q} --quality {input.quality:q}"
        " --camera {input.camera:q}"
        " --accuracy-by-split {output.accuracy_by_split:q}"
        " --accuracy-by-split {output.accuracy_by_split_pdf:q}"
        " --cui-vs-accuracy {output.cui_vs_accuracy:q}"
        " --cui-vs-accuracy {output.cui_vs_accuracy_pdf:q}"
        " --accuracy-vs-bytes {output.accuracy_vs_bytes:q}"
        " --accuracy-vs-bytes {output.accuracy_vs_bytes_pdf:q}"
        " --per-class-accuracy {output.per_class_accuracy:q}"
        " --per-class-accuracy {output.per_class_accuracy_pdf:q}"
        " --predictors {output.predictors:q} --predictors {output.predictors_pdf:q}"
        " > {log:q} 2>&1"


rule plot_latency:
    input:
        latency="results/{exp}/latency.parquet",
        recommendation="results/{exp}/recommendation.json",
        splits="results/{exp}/splits.parquet",
    output:
        **figure_outputs("plot_latency"),
    log:
        "logs/plot_latency/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("plot-latency"),
    shell:
        "python -m isplit plot-latency --latency {input.latency:q}"
        " --recommendation {input.recommendation:q} --splits {input.splits:q}"
        " --latency-accuracy {output.latency_accuracy:q}"
        " --latency-accuracy {output.latency_accuracy_pdf:q} > {log:q} 2>&1"


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
        in_report(
            "results/{exp}/summary.md", "summary", "0. summary", {"table": "summary"}
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
