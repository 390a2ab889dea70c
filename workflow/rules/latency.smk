rule profile_compute:
    input:
        model="results/{exp}/finetune/model.pt",
        splits=split_files("model.pt"),
    output:
        "results/{exp}/latency/compute.parquet",
    log:
        "logs/profile_compute/{exp}.log",
    benchmark:
        "benchmarks/profile_compute/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    # timings mean little with other jobs beside them: ask for a whole (8-core) node's worth;
    # a local run with fewer cores scales this down to all of them
    threads: 8
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        repeats=latency_value("repeats"),
        warmup=latency_value("warmup"),
        threads=latency_value("threads"),
        code=code_version("profile"),
    shell:
        "python -m isplit profile --model {input.model:q} --out {output:q}"
        " --repeats {params.repeats} --warmup {params.warmup} --threads {params.threads}"
        " {input.splits:q} > {log:q} 2>&1"


rule simulate_latency:
    input:
        splits="results/{exp}/splits.parquet",
        finetune="results/{exp}/finetune/metrics.json",
        camera="results/{exp}/camera/camera.parquet",
        tables=latency_tables,
        # this machine's timings only where a side is timed (scale, or a table: its rows are
        # picked by the local table's model and input size); named profiles need none
        compute=local_compute_table,
    output:
        "results/{exp}/latency.parquet",
    log:
        "logs/simulate_latency/{exp}.log",
    benchmark:
        "benchmarks/simulate_latency/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    # independent seeded simulations, one process each
    threads: 4
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cfg=exp_cfg("latency"),
        size=image_size,
        seed=exp_value("seed"),
        metric=exp_value("metric"),
        compute=compute_arg,
        code=code_version("simulate-latency"),
    shell:
        "python -m isplit simulate-latency --splits {input.splits:q}"
        " {params.compute} --finetune-metrics {input.finetune:q}"
        " --input-size {params.size} --config {params.cfg:q} --seed {params.seed}"
        " --metric {params.metric} --camera {input.camera:q} --workers {threads}"
        " --out {output:q} > {log:q} 2>&1"


rule recommend:
    input:
        latency="results/{exp}/latency.parquet",
        splits="results/{exp}/splits.parquet",
        finetune="results/{exp}/finetune/metrics.json",
        camera="results/{exp}/camera/camera.parquet",
        outcomes="results/{exp}/outcomes.parquet",
        camera_predictions="results/{exp}/camera/predictions.parquet",
    output:
        "results/{exp}/recommendation.json",
    log:
        "logs/recommend/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=exp_cfg("qos"),
        metric=exp_value("metric"),
        code=code_version("recommend"),
    shell:
        "python -m isplit recommend --latency {input.latency:q} --splits {input.splits:q}"
        " --finetune-metrics {input.finetune:q} --config {params.cfg:q}"
        " --metric {params.metric} --camera {input.camera:q}"
        " --outcomes {input.outcomes:q} --camera-predictions {input.camera_predictions:q}"
        " --out {output:q} > {log:q} 2>&1"
