"""`resmm`: one command over the jobs, one subcommand each. Each subcommand takes its job's own arguments
(`resmm train [--config YAML] key=value ...`), and `resmm <job> --help` lists them with examples. User mistakes
print one line and exit with code 2, as `python jobs/<job>.py` does; that form stays for `ray job submit`."""
from __future__ import annotations

import importlib
import sys

import click

# subcommand -> (the job's module, its line in `resmm --help`)
JOBS = {
    "train": ("jobs.train", "Train, track and register a model."),
    "predict": ("jobs.predict", "Batch inference with a registered model over Parquet shards."),
    "retrain": ("jobs.retrain", "Train a challenger; promote it only if it beats the champion."),
    "compare": ("jobs.compare", "Train a grid of settings and a hand-written reference on the same data."),
    "cache": ("jobs.cache", "List or prune the decoded-feature cache."),
    "demo-data": ("jobs.build_demo_data", "Build the built-in demo corpus (or the stamps corpus)."),
    "models": ("jobs.models", "The registered model's history; roll @champion back, or promote by hand."),
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="resmm")
def main() -> None:
    """resmm: distributed training of multimodal residual models on Parquet shards (Ray, PyTorch, MLflow).

    Run `resmm <command> --help` for a command's options and examples."""


def add_job(name: str, module: str, summary: str) -> None:
    """A subcommand that hands its arguments, --help included, to the job's own parser (imported only when run,
    so that `resmm --help` stays instant)."""

    @main.command(name, help=summary, short_help=summary, add_help_option=False,
                  context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.pass_context
    def run(ctx: click.Context) -> None:
        sys.argv[0] = f"resmm {name}"  # the job's usage line names the subcommand
        sys.exit(importlib.import_module(module).main(ctx.args))


for job_name, (job_module, job_summary) in JOBS.items():
    add_job(job_name, job_module, job_summary)
