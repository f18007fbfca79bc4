"""Tiny randomly initialised Hugging Face towers, written to disk in the library's own format (save_pretrained),
so the pretrained path (`model.encoders.<modality>=hf:<dir>`) is tested without downloading a weight."""
from __future__ import annotations

import json
from pathlib import Path



def write_tiny_vit(directory: Path, image_px: int = 16) -> Path:
    """A 1-layer ViT (hidden 32, 8-px patches) and the preprocessor_config.json ViTImageProcessor writes."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=image_px, patch_size=8, num_channels=3)
    ViTModel(config).save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "do_normalize": True,
        "size": {"height": image_px, "width": image_px}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    }))
    return directory


def write_tiny_bert(directory: Path, texts: list[str] | None = None) -> Path:
    """A 1-layer BERT (hidden 32) and a WordPiece tokenizer trained on `texts` (number words by default)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    corpus = texts or [f"{word} {n}" for n in range(40) for word in ("one two three four", "eins zwei drei")]
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        pad_token_id=tokenizer.token_to_id("[PAD]"))
    BertModel(config).save_pretrained(directory)
    return directory
