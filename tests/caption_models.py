"""Tiny captioning models built locally with the real classes: a BLIP image-to-text model
(transformers) and a WD14-style tagger (an ONNX graph with its selected_tags.csv)."""

from __future__ import annotations

from pathlib import Path

TAGS = [  # name, category (9 rating, 0 general, 4 character), logit = w·(R, G, B means) + b
    ("general", 9, (0, 0, 0), 6.0),
    ("explicit", 9, (0, 0, 0), 6.0),
    ("red_circle", 0, (40, 0, -40), 0.0),
    ("blue_background", 0, (-40, 0, 40), 0.0),
    ("^_^", 0, (0, 0, 0), 3.0),
    ("hatsune_miku", 4, (40, 0, -40), 0.0),
]


def build_blip(folder: Path) -> Path:
    import torch
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration,
                              BlipImageProcessor, BlipProcessor)

    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "dog", "red",
             "circle", "on", "white"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    text = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                sep_token_id=tokenizer.sep_token_id, encoder_hidden_size=32)
    vision = dict(hidden_size=32, image_size=32, patch_size=16, num_hidden_layers=1,
                  num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision,
                                                    projection_dim=32))
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tagger(folder: Path, size: int = 32) -> Path:
    """BGR pixels (0-255) -> mean per channel / 255 -> linear -> sigmoid, one output per tag."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weights = np.array([[w[2], w[1], w[0]] for _, _, w, _ in TAGS], dtype=np.float32).T / 255
    bias = np.array([b for *_, b in TAGS], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input", "axes"], ["means"], keepdims=0),
         helper.make_node("MatMul", ["means", "weights"], ["logits_raw"]),
         helper.make_node("Add", ["logits_raw", "bias"], ["logits"]),
         helper.make_node("Sigmoid", ["logits"], ["output"])],
        "tiny-tagger",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", len(TAGS)])],
        [numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
         numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    lines = ["tag_id,name,category,count"] + [f"{i},{name},{category},100"
                                              for i, (name, category, _, _) in enumerate(TAGS)]
    (folder / "selected_tags.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
