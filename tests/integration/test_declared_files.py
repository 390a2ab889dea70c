"""A finished run holds only the files its jobs declare: every file under the working
directory (results/, logs/, benchmarks/, resources/, hidden ones included) is an output, log or
benchmark of some job of ``snakemake --list-rules``, or lies inside a declared ``directory()``
output. A checkpoint or work file a job forgot to remove, or a file a command names by itself,
fails here with its path."""

from tools.workflow import ROOT, declared_files, undeclared

TINY = ("--configfile", str(ROOT / "config/tiny.yaml"))


def test_every_file_of_a_finished_run_is_declared(tiny_run):
    work, _ = tiny_run
    declared = declared_files(work, *TINY)
    stray = undeclared(work, declared)
    assert not stray, "files no job declares:\n" + "\n".join(stray)

    # the check sees the real run: it found the jobs of every stage, the per-split ones
    # behind the checkpoint included, and a declared file taken away is reported
    assert {"finetune", "retrain_split", "plot_splits", "export_split"} <= set(declared.values())
    history = "results/tiny/finetune/history.csv"
    assert declared[history] == "finetune" and "logs/finetune/tiny.log" in declared
    assert "benchmarks/finetune/tiny.tsv" in declared
    assert undeclared(work, set(declared) - {history}) == [history]
    deploy = [f for f, rule in declared.items() if rule == "export_split" and "/deploy/" in f]
    assert deploy and (work / deploy[0]).is_dir()  # a directory() output: its files are declared
