localrules:
    download_dataset,


rule download_dataset:
    output:
        "resources/downloads/{dataset}/{filename}",
    log:
        "logs/download_dataset/{dataset}/{filename}.log",
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=1000,
        runtime=120,
    params:
        cfg=dataset_download_cfg,
        lock=DOWNLOADS["lock_file"],
        timeout=DOWNLOADS["timeout_s"],
        retries=DOWNLOADS["retries"],
        code=code_version("fetch", "datasets"),
    shell:
        "python -m isplit download-dataset --config {params.cfg:q} --dest {output:q}"
        " --lock-file {params.lock:q} --timeout {params.timeout} --retries {params.retries}"
        " > {log:q} 2>&1"


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
        cfg=dataset_download_cfg,
        archive=prepare_archive_arg,
        code=code_version("datasets"),
    shell:
        "python -m isplit prepare-dataset --config {params.cfg:q} {params.archive}"
        " --out {output:q} > {log:q} 2>&1"
