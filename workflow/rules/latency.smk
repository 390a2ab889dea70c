rule profile_compute:
    input:
        model="results/{exp}/finetune/model.pt",
        splits=split_models,
    output:
        "results/{exp}/latency/compute.parquet",
    log:
        "logs/profile_compute/{exp}.log",
    benchmark:
        "benchmarks/profile_compute/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    # all local cores: timings mean little with other jobs beside them (a cluster job gets 8)
    threads: workflow.resource_settings.cores or 8
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        repeats=latency_value("repeats"),
        warmup=latency_value("warmup"),
        threads=latency_value("threads"),
        code=code_version("latency/compute.py", "retrain", "split", "models"),
    shell:
        "python -m isplit profile --model {input.model:q} --out {output:q}"
        " --repeats {params.repeats} --warmup {params.warmup} --threads {params.threads}"
        " {input.splits:q} > {log:q} 2>&1"


rule simulate_latency:
    input:
        splits="results/{exp}/splits.parquet",
        compute="results/{exp}/latency/compute.parquet",
        finetune="results/{exp}/finetune/metrics.json",
    output:
        "results/{exp}/latency.parquet",
    log:
        "logs/simulate_latency/{exp}.log",
    benchmark:
        "benchmarks/simulate_latency/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cfg=exp_cfg("latency"),
        size=lambda wildcards: EXPERIMENTS[wildcards.exp]["input"]["image_size"],
        seed=exp_value("seed"),
        code=code_version("latency"),
    shell:
        "python -m isplit simulate-latency --splits {input.splits:q}"
        " --compute {input.compute:q} --finetune-metrics {input.finetune:q}"
        " --input-size {params.size} --config {params.cfg:q} --seed {params.seed}"
        " --out {output:q} > {log:q} 2>&1"


rule recommend:
    input:
        latency="results/{exp}/latency.parquet",
        splits="results/{exp}/splits.parquet",
        finetune="results/{exp}/finetune/metrics.json",
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
        code=code_version("latency/recommend.py"),
    shell:
        "python -m isplit recommend --latency {input.latency:q} --splits {input.splits:q}"
        " --finetune-metrics {input.finetune:q} --config {params.cfg:q} --out {output:q}"
        " > {log:q} 2>&1"


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
        code=code_version("latency/figures.py"),
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
        code=code_version("quality", "latency/recommend.py"),
    shell:
        "python -m isplit summary --experiment {wildcards.exp:q} --splits {input.splits:q}"
        " --quality {input.quality:q} --finetune-metrics {input.finetune:q}"
        " --recommendation {input.recommendation:q} --out {output:q} {input.deploy:q}"
        " > {log:q} 2>&1"
