rule profile_onnx:
    # the fine-tuned model (timed whole: LC), the dataset (int8 calibration, the int8 head's
    # accuracy) and every candidate's export
    input:
        unpack(experiment_model_and_data),
        deploys=deploy_dirs,
    output:
        "results/{exp}/latency/measured.parquet",
    log:
        "logs/profile_onnx/{exp}.log",
    benchmark:
        "benchmarks/profile_onnx/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    # timings mean little with other jobs beside them: ask for the whole machine, as
    # profile_compute does; onnxruntime itself runs latency.threads threads
    threads: 8
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        repeats=latency_value("repeats"),
        warmup=latency_value("warmup"),
        threads=latency_value("threads"),
        eval_images=measured_eval_images,
        seed=exp_value("seed"),
        code=code_version("profile-onnx"),
    shell:
        "python -m isplit profile-onnx --model {input.model:q} --dataset {input.dataset:q}"
        " --out {output:q} --repeats {params.repeats} --warmup {params.warmup}"
        " --threads {params.threads} {params.eval_images} --seed {params.seed}"
        " {input.deploys:q} > {log:q} 2>&1"
