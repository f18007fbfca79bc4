"""The comparison table: resmm's rows and the reference's rows, which have no missing-rate robustness."""
from pipelines.compare import markdown_table, predictor_columns


def scores(value: float, rows: int = 10) -> dict:
    return {"balanced_accuracy": value, "accuracy": value, "macro_f1": value, "rows": rows}


def test_table_shows_the_reference_beside_resmm_with_dashes_for_what_it_lacks():
    resmm_row = {
        "name": "mrn", "modalities": "image+text", "fusion": "mrn", "val_balanced_accuracy": 0.9,
        "val_macro_f1": 0.8, "val_accuracy": 0.85, "robustness_mean_pattern_accuracy": 0.7,
        "robustness": {"missing_rate": {"image": {"0.5": 0.6}, "text": {"0.5": 0.5}}}, "wall_time_s": 12.0,
        **predictor_columns({"chosen": {"name": "late:skill"}, "candidates": [
            {"candidate": "fused", "val_balanced_accuracy": 0.9}, {"candidate": "head:image", "val_balanced_accuracy": 0.7},
            {"candidate": "head:text", "val_balanced_accuracy": 0.8}, {"candidate": "late:skill", "val_balanced_accuracy": 0.95}]}),
    }
    image = {
        "name": "reference: image CNN", "modalities": "image", "fusion": "-", "val_balanced_accuracy": 0.5,
        "val_macro_f1": 0.4, "val_accuracy": 0.45, "robustness_mean_pattern_accuracy": None, "robustness": None,
        "wall_time_s": 3.0, "reference": {"all_rows": scores(0.42)},
    }
    fusion = {
        **image, "name": "reference: late fusion", "modalities": "image+text", "robustness_mean_pattern_accuracy": 0.55,
        "robustness": {"patterns": {}, "missing_rate": {}}, "reference": {"pairs": {"image+text": scores(0.6, 9)}},
    }

    lines = markdown_table([resmm_row, image, fusion]).splitlines()

    assert lines[2] == ("| mrn | image+text | mrn | 0.9000 | 0.9500 (late:skill) | 0.8000 (head:text) | 0.8000 | 0.8500 | "
                        "0.7000 | 0.600 / 0.500 / - | 12 |")
    assert lines[3] == "| reference: image CNN | image | - | 0.5000 | - | - | 0.4000 | 0.4500 | - | - / - / - | 3 |"
    assert "| 0.5500 | - / - / - |" in lines[4]
    with_error = markdown_table([{**resmm_row, "val_balanced_accuracy_se": 0.0312}]).splitlines()[2]
    assert with_error.startswith("| mrn | image+text | mrn | 0.9000 ± 0.0312 | 0.9500 (late:skill) |")
    assert "image 0.4200" in "\n".join(lines)  # the unimodal score on every validation row, in the note
    assert "| image+text | 9 | 0.6000 | 0.6000 | 0.6000 |" in lines
