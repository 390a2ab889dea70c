rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        model="results/{exp}/finetune/model.pt",
        metrics="results/{exp}/finetune/metrics.json",
        history="results/{exp}/finetune/history.csv",
        predictions="results/{exp}/finetune/predictions.parquet",
    log:
        "logs/finetune/{exp}.log",
    benchmark:
        "benchmarks/finetune/{exp}.tsv"
    conda:
        "../envs/isplit.yaml"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        model=exp_value("model"),
        weights=weights_arg,
        input=exp_cfg("input"),
        cfg=exp_cfg("finetune"),
        seed=exp_value("seed"),
        code=code_version("finetune"),
    shell:
        "python -m isplit finetune --dataset {input.dataset:q} --model {params.model}"
        " --weights {params.weights:q} --input {params.input:q} --config {params.cfg:q}"
        " --seed {params.seed} --model-out {output.model:q} --metrics-out {output.metrics:q}"
        " --history-out {output.history:q} --predictions-out {output.predictions:q}"
        " --threads {threads} > {log:q} 2>&1"


rule retrain_split:
    input:
        unpack(experiment_model_and_data),
    output:
        model="results/{exp}/splits/{layer}/model.pt",
        metrics="results/{exp}/splits/{layer}/metrics.json",
        predictions="results/{exp}/splits/{layer}/predictions.parquet",
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
        cfg=retrain_cfg,
        seeds=retrain_seeds,
        data_seed=exp_value("seed"),
        code=code_version("retrain-split"),
    shell:
        "python -m isplit retrain-split --model {input.model:q} --dataset {input.dataset:q}"
        " --layer {wildcards.layer:q} --config {params.cfg:q} --seeds {params.seeds}"
        " --data-seed {params.data_seed} --model-out {output.model:q}"
        " --metrics-out {output.metrics:q} --predictions-out {output.predictions:q}"
        " --threads {threads} > {log:q} 2>&1"
