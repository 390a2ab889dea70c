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
        out="results/{exp}/importance",
        code=code_version("importance", "models", "datasets/loader.py", "train"),
    shell:
        "python -m isplit importance --model {input.model:q} --dataset {input.dataset:q}"
        " --config {params.cfg:q} --seed {params.seed} --out {params.out:q}"
        " --threads {threads} > {log:q} 2>&1"


rule cui:
    input:
        samples="results/{exp}/importance/samples.parquet",
        dataset=experiment_dataset,
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
        code=code_version("cui", "importance"),
    shell:
        "python -m isplit cui --samples {input.samples:q} --dataset {input.dataset:q}"
        " --out {output:q} > {log:q} 2>&1"


checkpoint select_candidates:
    input:
        curve="results/{exp}/cui/curve.parquet",
        model="results/{exp}/finetune/model.pt",
    output:
        "results/{exp}/candidates.tsv",
    log:
        "logs/select_candidates/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cfg=exp_cfg("candidates"),
        code=code_version("candidates", "models"),
    shell:
        "python -m isplit select-candidates --curve {input.curve:q} --model {input.model:q}"
        " --config {params.cfg:q} --out {output:q} > {log:q} 2>&1"


rule plot_cui:
    input:
        curve="results/{exp}/cui/curve.parquet",
        candidates="results/{exp}/candidates.tsv",
        model="results/{exp}/finetune/model.pt",
    output:
        report(
            "results/{exp}/figures/cui_curve.png",
            caption="../report/cui_curve.rst",
            category="{exp}",
            subcategory="1. importance",
            labels={"experiment": "{exp}", "figure": "CUI curve"},
        ),
        "results/{exp}/figures/cui_curve.pdf",
        report(
            "results/{exp}/figures/cui_per_class.png",
            caption="../report/cui_per_class.rst",
            category="{exp}",
            subcategory="1. importance",
            labels={"experiment": "{exp}", "figure": "CUI per class"},
        ),
        "results/{exp}/figures/cui_per_class.pdf",
    log:
        "logs/plot_cui/{exp}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        out="results/{exp}/figures",
        code=code_version("plots"),
    shell:
        "python -m isplit plot-cui --curve {input.curve:q} --candidates {input.candidates:q}"
        " --model {input.model:q} --out {params.out:q} > {log:q} 2>&1"
