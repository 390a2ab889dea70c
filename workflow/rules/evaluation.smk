rule gather_splits:
    input:
        unpack(probe_inputs),
        candidates="results/{exp}/candidates_all.tsv",
        curve="results/{exp}/cui/curve.parquet",
        finetune="results/{exp}/finetune/metrics.json",
        finetune_predictions="results/{exp}/finetune/predictions.parquet",
        metrics=split_files("metrics.json"),
        predictions=split_files("predictions.parquet"),
    output:
        splits="results/{exp}/splits.parquet",
        quality="results/{exp}/quality.json",
        outcomes="results/{exp}/outcomes.parquet",
    log:
        "logs/gather_splits/{exp}.log",
    benchmark:
        "benchmarks/gather_splits/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        metric=exp_value("metric"),
        probe=probe_arg,
        seeds=retrain_seeds,
        seed=exp_value("seed"),
        code=code_version("gather-splits"),
    shell:
        "python -m isplit gather-splits --candidates {input.candidates:q}"
        " --curve {input.curve:q} --finetune-metrics {input.finetune:q} {params.probe}"
        " --metric {params.metric} --seeds {params.seeds} --seed {params.seed}"
        " --splits-out {output.splits:q}"
        " --quality-out {output.quality:q} --outcomes-out {output.outcomes:q}"
        " {input.metrics:q} > {log:q} 2>&1"


rule simple_baseline:
    input:
        dataset=experiment_dataset,
        finetuned="results/{exp}/finetune/predictions.parquet",
    output:
        "results/{exp}/baseline.json",
    log:
        "logs/simple_baseline/{exp}.log",
    benchmark:
        "benchmarks/simple_baseline/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        eval_subset=eval_subset_arg,
        seed=exp_value("seed"),
        code=code_version("simple-baseline"),
    shell:
        "python -m isplit simple-baseline --dataset {input.dataset:q} --seed {params.seed}"
        " {params.eval_subset} --finetuned-predictions {input.finetuned:q}"
        " --out {output:q} > {log:q} 2>&1"
