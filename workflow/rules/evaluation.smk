rule gather_splits:
    input:
        candidates="results/{exp}/candidates_all.tsv",
        finetune="results/{exp}/finetune/metrics.json",
        metrics=split_files("metrics.json"),
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
        code=code_version("gather-splits"),
    shell:
        "python -m isplit gather-splits --candidates {input.candidates:q}"
        " --finetune-metrics {input.finetune:q} --splits-out {output.splits:q}"
        " --quality-out {output.quality:q} {input.metrics:q} > {log:q} 2>&1"
