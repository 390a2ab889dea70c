localrules:
    pretrained_weights,


rule pretrained_weights:
    output:
        "resources/weights/{model}/{wslug}.pth",
    log:
        "logs/pretrained_weights/{model}/{wslug}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=weights_spec,
        lock=DOWNLOADS["lock_file"],
        code=code_version("weights", "fetch", "models"),
    shell:
        "python -m isplit fetch-weights --model {wildcards.model} --spec {params.spec:q}"
        " --dest {output:q} --lock-file {params.lock:q} > {log:q} 2>&1"


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        model="results/{exp}/finetune/model.pt",
        metrics="results/{exp}/finetune/metrics.json",
        history="results/{exp}/finetune/history.csv",
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
        out="results/{exp}/finetune",
        code=code_version("finetune", "train", "models", "datasets/loader.py"),
    shell:
        "python -m isplit finetune --dataset {input.dataset:q} --model {params.model}"
        " --weights {params.weights:q} --input {params.input:q} --config {params.cfg:q}"
        " --seed {params.seed} --out {params.out:q} --threads {threads} > {log:q} 2>&1"
