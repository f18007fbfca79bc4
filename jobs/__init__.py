"""The jobs: thin entrypoints over pipelines/, run as `resmm <job>` (jobs/cli.py) or `python jobs/<job>.py`."""
