rule importance:
    input:
        unpack(experiment_model_and_data),
    output:
        samples="results/{exp}/importance/samples.parquet",
        channels="results/{exp}/importance/channels.parquet",
    log:
        "logs/importance/{exp}.log",
    benchmark:
        "benchmarks/importance/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        cfg=exp_cfg("importance"),
        seed=exp_value("seed"),
        code=code_version("importance"),
    shell:
        "python -m isplit importance --model {input.model:q} --dataset {input.dataset:q}"
        " --config {params.cfg:q} --seed {params.seed} --samples-out {output.samples:q}"
        " --channels-out {output.channels:q} --threads {threads} > {log:q} 2>&1"


rule linear_probe:
    input:
        unpack(experiment_model_and_data),
    output:
        table="results/{exp}/importance/probe.parquet",
        outcomes="results/{exp}/importance/probe_outcomes.parquet",
    log:
        "logs/linear_probe/{exp}.log",
    benchmark:
        "benchmarks/linear_probe/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        cfg=exp_cfg("importance"),
        seed=exp_value("seed"),
        code_bytes=code_bytes,
        code=code_version("linear-probe"),
    shell:
        "python -m isplit linear-probe --model {input.model:q} --dataset {input.dataset:q}"
        " --config {params.cfg:q} --seed {params.seed} --code-bytes {params.code_bytes}"
        " --out {output.table:q} --outcomes-out {output.outcomes:q}"
        " --threads {threads} > {log:q} 2>&1"


rule cui:
    input:
        "results/{exp}/importance/samples.parquet",
    output:
        "results/{exp}/cui/curve.parquet",
    log:
        "logs/cui/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_version("cui"),
    shell:
        "python -m isplit cui --samples {input:q} --out {output:q} > {log:q} 2>&1"


checkpoint select_candidates:
    input:
        "results/{exp}/cui/curve.parquet",
    output:
        selected="results/{exp}/candidates.tsv",
        every="results/{exp}/candidates_all.tsv",
    log:
        "logs/select_candidates/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=exp_cfg("candidates"),
        code=code_version("select-candidates"),
    shell:
        "python -m isplit select-candidates --curve {input:q} --config {params.cfg:q}"
        " --out {output.selected:q} --all-out {output.every:q} > {log:q} 2>&1"
