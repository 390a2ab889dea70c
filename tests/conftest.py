"""Fixtures shared by the test tiers (helpers live in the ``tools`` package)."""

import pytest

from tools import synthetic
from tools.workflow import ROOT, snakemake


@pytest.fixture(scope="session")
def array_dataset(tmp_path_factory):
    return synthetic.write(tmp_path_factory.mktemp("data") / "synthetic")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """config/tiny.yaml run to the end in a scratch working directory. Every job logs its
    imports (PYTHONPROFILEIMPORTTIME), so tests can see what each rule really loaded."""
    work = tmp_path_factory.mktemp("tiny")
    r = snakemake(
        "--cores", "2", "--configfile", str(ROOT / "config/tiny.yaml"), "--directory", str(work),
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )  # fmt: skip
    return work, r
