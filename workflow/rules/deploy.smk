rule export_split:
    input:
        exported_model,
    output:
        directory("results/{exp}/deploy/{layer}"),
    log:
        "logs/export_split/{exp}/{layer}.log",
    benchmark:
        "benchmarks/export_split/{exp}/{layer}.tsv"
    conda:
        "../envs/isplit.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_version("export"),
    shell:
        "python -m isplit export --split {input:q} --out {output:q} > {log:q} 2>&1"
