"""Pretrained towers (`model.encoders.<modality>=hf:<dir>`) on tiny random checkpoints the tests write themselves:
loading, freeze / finetune, the tokenizer pinned in the spec, and the preprocessing the bundle records."""
from __future__ import annotations

import shutil

import pytest
import torch

from resmm.config import ConfigError, load_config
from resmm.modalities.spec import BatchPreprocessor, PreprocessSpec
from resmm.modalities.network import build_model
from resmm.models.pretrained import pretrained_preprocessing
from tests.towers import write_tiny_bert, write_tiny_vit


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    return write_tiny_vit(root / "vit"), write_tiny_bert(root / "bert")


def configured(towers, *overrides):
    vit, bert = towers
    cfg = load_config(None, [f"model.encoders.image=hf:{vit}", f"model.encoders.text=hf:{bert}", "model.embed_dim=16",
                             "data.text.max_tokens=12", "data.audio.max_seconds=0.5", *overrides])
    spec = PreprocessSpec.from_config(cfg.data, cfg.model.modalities, ["a", "b"])
    return cfg, spec


def batch_of(spec, texts):
    decoded = BatchPreprocessor(spec).decode_column("text", texts)
    batch = {"image": torch.rand(len(texts), *spec.input_shape("image")),
             "audio": torch.randn(len(texts), *spec.input_shape("audio")), "text": torch.from_numpy(decoded.values)}
    batch.update({f"{m}_present": torch.ones(len(texts)) for m in ("image", "audio")})
    batch["text_present"] = torch.from_numpy(decoded.present.astype("float32"))
    return batch


def test_a_text_tower_brings_its_tokenizer_into_the_saved_spec(towers, tmp_path):
    vit, bert = towers
    cfg, spec = configured(towers)
    assert cfg.data.text.tokenizer == f"hf:{bert}"
    text = spec.settings["text"]
    assert text.tokenizer_json and text.vocab_buckets > 64
    decoded = BatchPreprocessor(spec).decode_column("text", ["three four", None, "zwei"])
    assert decoded.present.tolist() == [True, False, True]
    assert decoded.values[0, 0] == 1 + 2  # [CLS] is the tokenizer's id 2, shifted by one: 0 stays padding
    # The saved spec tokenizes on its own, after the tokenizer's directory is gone (a server elsewhere).
    copy = tmp_path / "bert"
    shutil.copytree(bert, copy)
    cfg_copy = load_config(None, [f"data.text.tokenizer=hf:{copy}", "data.text.max_tokens=12"])
    saved = PreprocessSpec.from_config(cfg_copy.data, ["text"], ["a", "b"]).to_dict()
    shutil.rmtree(copy)
    served = BatchPreprocessor(PreprocessSpec.from_dict(saved)).decode_column("text", ["three four", None, "zwei"])
    assert (served.values == decoded.values).all()


def test_a_frozen_tower_trains_only_its_projection_and_keeps_dropout_off(towers):
    cfg, spec = configured(towers)
    torch.manual_seed(0)
    net = build_model(cfg.model, spec).train()
    image = net.encoders["image"]
    assert not any(p.requires_grad for p in image.tower.parameters())
    assert not image.tower.training  # net.train() leaves a frozen tower in eval mode
    batch = batch_of(spec, ["one two", "drei"])
    torch.testing.assert_close(image(batch["image"]), image(batch["image"]))
    net(batch).logits.sum().backward()
    assert image.project.weight.grad is not None and image.project.weight.grad.abs().sum() > 0


def test_a_finetuned_tower_gets_gradients(towers):
    cfg, spec = configured(towers, "model.encoder_options.text.mode=finetune")
    torch.manual_seed(0)
    net = build_model(cfg.model, spec).train()
    net(batch_of(spec, ["one two three", "eins"])).logits.sum().backward()
    grads = [p.grad for p in net.encoders["text"].tower.parameters() if p.requires_grad]
    assert grads and sum(g.abs().sum() for g in grads if g is not None) > 0


def test_the_bundle_records_each_towers_preprocessing(towers):
    vit, bert = towers
    cfg, spec = configured(towers)
    recorded = pretrained_preprocessing(build_model(cfg.model, spec))
    assert recorded == {
        "image": {"source": str(vit), "size_px": 16, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3,
                  "mode": "freeze"},
        "text": {"source": str(bert), "tokenizer": f"hf:{bert}", "pad_token_id": 0, "mode": "freeze"},
    }


def test_serving_refuses_a_tower_whose_preprocessing_changed(towers, tmp_path):
    from mlflow.exceptions import MlflowException

    from resmm.tracking.pyfunc_model import load_network

    cfg, spec = configured(towers)
    net = build_model(cfg.model, spec)
    weights = tmp_path / "weights.pt"
    torch.save(net.state_dict(), weights)
    bundle = {"model": cfg.model.model_dump(mode="json"), "spec": spec.to_dict(), "impute": "zero",
              "pretrained": pretrained_preprocessing(net)}
    loaded, _ = load_network(bundle, str(weights))
    assert torch.equal(loaded.encoders["image"].project.weight, net.encoders["image"].project.weight)
    bundle["pretrained"]["image"]["size_px"] = 224
    with pytest.raises(MlflowException, match="pretrained towers at serving .* differ from training's"):
        load_network(bundle, str(weights))


def test_missing_tower_files_are_one_line_errors():
    cfg = load_config(None, ["model.encoders.image=hf:/nowhere/vit"])
    spec = PreprocessSpec.from_config(cfg.data, cfg.model.modalities, ["a", "b"])
    with pytest.raises(ValueError, match="cannot load the pretrained tower 'hf:/nowhere/vit'"):
        build_model(cfg.model, spec)
    with pytest.raises(ValueError, match="no tokenizer.json at '/nowhere/bert'"):
        PreprocessSpec.from_config(load_config(None, ["data.text.tokenizer=hf:/nowhere/bert"]).data, ["text"], ["a"])
    with pytest.raises(ConfigError, match="data.text.tokenizer"):
        load_config(None, ["data.text.tokenizer=bpe"])


def test_an_auto_text_length_counts_the_hf_tokenizers_tokens(towers):
    from resmm.modalities.text import TEXT

    _, bert = towers
    cfg = load_config(None, [f"data.text.tokenizer=hf:{bert}"])
    hashed = TEXT.auto_length.choose(["one two three four"] * 20, load_config(None, []).data.text)
    counted = TEXT.auto_length.choose(["one two three four"] * 20, cfg.data.text)
    assert "= 6 tokens" in counted.reason  # [CLS] one two three four [SEP]
    assert hashed.reason != counted.reason
