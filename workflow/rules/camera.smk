rule camera_baselines:
    input:
        unpack(experiment_model_and_data),
    output:
        table="results/{exp}/camera/camera.parquet",
        predictions="results/{exp}/camera/predictions.parquet",
    log:
        "logs/camera_baselines/{exp}.log",
    benchmark:
        "benchmarks/camera_baselines/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cfg=exp_cfg("camera"),
        eval_subset=eval_subset_arg,
        seed=exp_value("seed"),
        code=code_version("camera-baselines"),
    shell:
        "python -m isplit camera-baselines --model {input.model:q} --dataset {input.dataset:q}"
        " --config {params.cfg:q} --seed {params.seed} --out {output.table:q}"
        " --predictions-out {output.predictions:q} --threads {threads} {params.eval_subset}"
        " > {log:q} 2>&1"
