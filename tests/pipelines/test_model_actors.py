"""The evaluation actor's split: training's own rule (by group, else sample_id), whichever resmm a model bundles."""
import subprocess
import sys

import pandas as pd
import pyarrow as pa

from pipelines.model_actors import job_split, one_side
from resmm.data.split import is_validation, split_keys
from tests.conftest import REPO


def test_the_job_split_loads_without_importing_resmm():
    code = ("import sys; from pipelines.model_actors import job_split; split = job_split(); "
            "assert 'resmm' not in sys.modules, 'resmm imported'; print(split.__file__)")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == str(REPO / "resmm" / "data" / "split.py")


def test_the_evaluated_side_is_the_training_side_by_group():
    rows = pd.DataFrame({"sample_id": [f"photo-{i}" for i in range(40)], "label": [i % 3 for i in range(40)],
                         "group_id": [None if i % 7 == 0 else f"object-{i % 5}" for i in range(40)]})
    table = pa.Table.from_pandas(rows, preserve_index=False)
    for validation in (True, False):
        kept = one_side(rows, job_split(), validation, 0.25, "group_id")
        in_val = is_validation(split_keys(table, "group_id"), 0.25)
        expected = table.filter(pa.array(in_val if validation else ~in_val))
        assert kept["sample_id"].tolist() == expected.column("sample_id").to_pylist()
        assert "group_id" not in kept.columns  # the model is fed its contract columns only
    assert 0 < len(one_side(rows, job_split(), True, 0.25, "group_id")) < 40
