"""The hand-written reference recipe: resmm's split and decoding, per-modality training, late fusion."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from resmm.baselines.reference import decode_split, late_fusion, train_reference
from resmm.models.reference import BagOfTokens
from resmm.sources.contract import class_order
from resmm.config import load_config
from resmm.modalities.spec import PreprocessSpec
from resmm.data.split import is_validation
from tests.conftest import contract_table


def test_split_and_decoding_match_resmm(shard_dir):
    cfg = load_config(None, [f"data.path={shard_dir}", "data.val_fraction=0.3"])
    train, val, classes = decode_split(cfg, progress=lambda _line: None)

    ids = [f"s{seed}-{i}" for seed in (0, 100, 200) for i in range(12)]
    in_val = is_validation(ids, 0.3)
    assert sorted(val["sample_id"]) == sorted(np.array(ids)[in_val]) and len(val["sample_id"]) > 0
    assert sorted(train["sample_id"]) == sorted(np.array(ids)[~in_val])
    assert classes == ["0", "1", "2"]
    spec = PreprocessSpec.from_config(cfg.data, cfg.model.modalities, classes)
    for m in cfg.model.modalities:
        assert train[m].shape == (len(train["label"]), *spec.input_shape(m))
        assert set(np.unique(train[f"{m}_present"])) == {1.0}
    assert train["text"].dtype == np.int64 and train["image"].dtype == np.float32


def test_split_keeps_each_group_on_one_side(tmp_path):
    groups = [f"object-{i % 6}" for i in range(12)]
    for shard in range(2):
        table = contract_table(seed=shard * 100).append_column("group_id", pa.array(groups))
        pq.write_table(table, tmp_path / f"part-{shard}.parquet")
    cfg = load_config(None, [f"data.path={tmp_path}", "data.val_fraction=0.3"])
    train, val, _ = decode_split(cfg, progress=lambda _line: None)
    group_of = {f"s{seed}-{i}": group for seed in (0, 100) for i, group in enumerate(groups)}
    val_groups, train_groups = ({group_of[s] for s in side["sample_id"]} for side in (val, train))
    assert val_groups and train_groups and not val_groups & train_groups


def test_rows_resmm_quarantines_are_left_out(tmp_path):
    table = contract_table(rows=6)
    ids = table.column("sample_id").to_pylist()
    table = table.set_column(0, "sample_id", pa.array([*ids[:5], ids[1]]))  # the last row repeats row 1's id
    table = table.set_column(1, "label", pa.array([None, 1, 2, 0, 1, 0], pa.int64()))
    pq.write_table(table, tmp_path / "part-0.parquet")
    cfg = load_config(None, [f"data.path={tmp_path}", "data.classes=['0','1']", "data.val_fraction=0.01"])

    train, val, _ = decode_split(cfg, progress=lambda _line: None)

    # row 0: null label, row 2: label outside data.classes, row 5: a second copy of row 1's id
    rows = {s: int(y) for s, y in zip([*train["sample_id"], *val["sample_id"]], [*train["label"], *val["label"]])}
    assert len(train["label"]) + len(val["label"]) == 3
    assert rows == {ids[1]: 1, ids[3]: 0, ids[4]: 1}


def test_class_order_is_numeric_for_integer_labels_else_alphabetical():
    """The reference and the pipeline share resmm.sources.contract's class order; these are the orders it gives."""
    expected = {("10", "2", "1"): ["1", "2", "10"], ("b", "a", "10"): ["10", "a", "b"], ("-1", "3"): ["-1", "3"]}
    for names, order in expected.items():
        assert class_order(names) == order


def text_only_shards(path, rows: int) -> None:
    words = ["zero", "one", "two"]
    labels = [i % 3 for i in range(rows)]
    pq.write_table(pa.table({
        "sample_id": pa.array([f"t-{i}" for i in range(rows)]),
        "label": pa.array(labels, pa.int64()),
        "image": pa.array([None] * rows, pa.binary()),
        "text": pa.array([" ".join([words[v]] * 3) for v in labels]),
        "audio": pa.array([None] * rows, pa.binary()),
    }), path / "part-0.parquet")


def test_two_epochs_learn_a_text_that_names_its_class(tmp_path):
    text_only_shards(tmp_path, 900)
    cfg = load_config(None, [f"data.path={tmp_path}", "model.modalities=[text]", "data.text_vocab_buckets=256"])

    result = train_reference(cfg, epochs=2, progress=lambda _line: None)

    assert result["unimodal"]["text"]["balanced_accuracy"] >= 0.9
    assert result["late_fusion"]["balanced_accuracy"] >= 0.9
    assert result["unimodal"]["text"]["rows"] == result["val_rows"] > 0


def test_late_fusion_sums_only_the_models_of_present_modalities():
    log_probs = {  # two rows, three classes; the image model is confident in class 0 everywhere
        "image": np.log(np.array([[0.98, 0.01, 0.01], [0.98, 0.01, 0.01]])),
        "text": np.log(np.array([[0.2, 0.7, 0.1], [0.2, 0.7, 0.1]])),
    }
    present = {"image": np.array([False, True]), "text": np.array([True, True])}
    assert late_fusion(log_probs, present, fallback=2).tolist() == [1, 0]

    nothing = {"image": np.array([False]), "text": np.array([False])}
    assert late_fusion({m: v[:1] for m, v in log_probs.items()}, nothing, fallback=2).tolist() == [2]


def test_token_bag_leaves_padding_out_of_the_mean():
    torch.manual_seed(0)
    bag = BagOfTokens(vocab_buckets=16, num_classes=3)
    padded = bag(torch.tensor([[5, 7, 0, 0]]))
    assert torch.allclose(padded, bag(torch.tensor([[5, 7]])))
