"""``isplit <step>``: one subcommand per workflow rule, each a thin call into the package.

Rules pass their own config section as a JSON string (``--config``), so a step never reads the
global workflow config and can be run by hand exactly as the workflow runs it. This package is
the only place that imports click.

Each command lives in the module of its stage and is imported only when called
(:data:`COMMANDS`): a step that only reads tables never pays for importing torch, and the code
hash of a rule (:mod:`isplit.cli.provenance`) follows the imports of its own command.
"""

from __future__ import annotations

import importlib
import sys

import click

from isplit import __version__
from isplit.errors import USER_ERRORS

#: command name → "module:function"
COMMANDS = {
    "download-dataset": "isplit.cli.data:download_dataset",
    "prepare-dataset": "isplit.cli.data:prepare_dataset",
    "fetch-weights": "isplit.cli.nets:fetch_weights",
    "probe-points": "isplit.cli.nets:probe_points",
    "check-model": "isplit.cli.nets:check_model",
    "finetune": "isplit.cli.train:finetune",
    "retrain-split": "isplit.cli.train:retrain_split",
    "importance": "isplit.cli.importance:importance",
    "linear-probe": "isplit.cli.importance:linear_probe",
    "cui": "isplit.cli.importance:cui",
    "select-candidates": "isplit.cli.importance:select_candidates",
    "camera-baselines": "isplit.cli.camera:camera_baselines",
    "gather-splits": "isplit.cli.evaluation:gather_splits",
    "simple-baseline": "isplit.cli.evaluation:simple_baseline",
    "summary": "isplit.cli.evaluation:summary",
    "profile": "isplit.cli.latency:profile",
    "simulate-latency": "isplit.cli.latency:simulate_latency",
    "simulate-link": "isplit.cli.latency:simulate_link",
    "recommend": "isplit.cli.recommend:recommend",
    "plot-cui": "isplit.cli.figures:plot_cui",
    "plot-splits": "isplit.cli.figures:plot_splits",
    "plot-latency": "isplit.cli.figures:plot_latency",
    "export": "isplit.cli.deploy:export",
    "serve": "isplit.cli.deploy:serve",
    "device": "isplit.cli.deploy:device",
    "profile-onnx": "isplit.cli.deploy:profile_onnx",
}


class Group(click.Group):
    """Commands are imported when called; expected failures (bad input, a failed download)
    end with one clear line, no traceback."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            raise click.ClickException(f"{type(e).__name__}: {e}") from e


@click.group(cls=Group)
@click.version_option(__version__, prog_name="isplit")
def main():
    """I-SPLIT / Split-Et-Impera pipeline steps."""


if __name__ == "__main__":
    sys.exit(main())
