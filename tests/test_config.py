"""Config: YAML plus dotted overrides, one-line errors naming the key and the allowed values."""
import pytest

from resmm.config import ConfigError, load_config


def test_defaults_are_complete_and_flat_keys_are_dotted():
    flat = load_config().flat()
    for key in ["data.path", "data.val_path", "data.val_fraction", "data.classes", "model.modalities",
                "model.fusion", "train.num_workers", "train.use_gpu", "train.epochs", "train.batch_size",
                "train.lr", "train.seed", "train.storage_path", "mlflow.experiment", "mlflow.registered_model"]:
        assert key in flat
    assert flat["mlflow.registered_model"] == "resmm"


def test_the_batch_is_global_unless_a_per_worker_batch_is_set():
    rows = {n: load_config(None, [f"train.num_workers={n}"]).train.worker_batch_rows() for n in (1, 2, 3)}
    assert rows == {1: 64, 2: 32, 3: 22}  # the steps per epoch stay those of one worker (3 workers: 66 rows)
    assert load_config(None, ["train.num_workers=4", "train.batch_size=2"]).train.worker_batch_rows() == 1
    per_worker = load_config(None, ["train.num_workers=4", "train.batch_size_per_worker=256"]).train
    assert per_worker.worker_batch_rows() == 256


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  fusion: concat\ntrain:\n  epochs: 7\n")
    cfg = load_config(path, ["train.epochs=2", "model.modalities=[audio,image]", "data.classes=[a,b]"])
    assert cfg.model.fusion == "concat" and cfg.train.epochs == 2
    assert cfg.model.modalities == ["image", "audio"]  # canonical order
    assert cfg.data.classes == ["a", "b"]


def test_the_group_column_defaults_to_group_id_and_null_splits_by_sample_id():
    assert load_config().data.group_column == "group_id"
    assert load_config(None, ["data.group_column=null"]).data.group_column is None
    assert load_config(None, ["data.group_column=speaker"]).data.group_column == "speaker"


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.fusion=foo", "config error: model.fusion: must be one of 'concat', 'mean', 'gated', 'attention', 'mrn' or 'tensor' (got 'foo')"),
        ("data.bogus=1", "config error: unknown key 'data.bogus' (allowed: data.path,"),
        ("model.modalities=[video]", "config error: model.modalities: must be one of 'image', 'text' or 'audio'"),
        ("train.epochs=0", "config error: train.epochs: Input should be greater than or equal to 1 (got 0)"),
        ("model.modalities=[]", "config error: model.modalities: must be a non-empty subset"),
        ("notakeyvalue", "is not of the form key=value"),
        ("data.group_column=label", "config error: data.group_column: must name the column of each row's group, "
                                    "not a contract column (null: by sample_id) (got 'label')"),
        ("data.group_column=''", "config error: data.group_column: String should have at least 1 character"),
    ],
)
def test_bad_values_give_one_line_errors(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)
