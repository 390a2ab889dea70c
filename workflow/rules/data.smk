localrules:
    download_dataset,
    pretrained_weights,


rule download_dataset:
    output:
        archive="resources/downloads/{dataset}/{filename}",
        checksum="resources/downloads/{dataset}/{filename}.sha256",
    log:
        "logs/download_dataset/{dataset}/{filename}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=1000,
        runtime=120,
    params:
        cfg=dataset_cfg,
        timeout=DOWNLOADS["timeout_s"],
        retries=DOWNLOADS["retries"],
        retry_budget=DOWNLOADS["retry_budget_s"],
        code=code_version("download-dataset"),
    shell:
        "python -m isplit download-dataset --config {params.cfg:q} --dest {output.archive:q}"
        " --timeout {params.timeout} --retries {params.retries}"
        " --retry-budget {params.retry_budget} > {log:q} 2>&1"


rule prepare_dataset:
    input:
        unpack(prepare_inputs),
    output:
        directory("resources/datasets/{dataset}"),
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cfg=dataset_cfg,
        archive=prepare_archive_arg,
        limits=as_json(
            {
                k: DOWNLOADS[k]
                for k in ("max_member_mb", "max_unpacked_mb", "max_ratio")
            }
        ),
        code=code_version("prepare-dataset"),
    shell:
        "python -m isplit prepare-dataset --config {params.cfg:q} {params.archive}"
        " --limits {params.limits:q} --out {output:q} > {log:q} 2>&1"


rule pretrained_weights:
    output:
        weights="resources/weights/{model}/{wslug}.pth",
        checksum="resources/weights/{model}/{wslug}.pth.sha256",
    log:
        "logs/pretrained_weights/{model}/{wslug}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=weights_spec,
        code=code_version("fetch-weights"),
    shell:
        "python -m isplit fetch-weights --model {wildcards.model} --spec {params.spec:q}"
        " --dest {output.weights:q} > {log:q} 2>&1"
