"""Small random-weight models of each family, built by transformers itself and saved as save_pretrained writes
them (config.json + model.safetensors): the model hub is not reachable from CI, and the loading code reads a
local directory exactly as it reads a downloaded snapshot."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the optional group: pip install -e '.[pretrained]'")

from .hf_tokenizers import save_bert_tokenizer, save_gpt2_tokenizer, save_marian_tokenizer  # noqa: E402

VOCAB = 97  # small and odd (no accidental power-of-two alignments); the last id is Marian's pad
PAD = VOCAB - 1


def randomise(model):
    """transformers initialises biases to zero and norms to one: perturb every parameter, so a bias or norm mapped
    to the wrong place cannot go unnoticed."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" not in name:  # Marian's sinusoidal table is fixed, not a trained weight
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def tiny_gpt2(**overrides):
    settings = dict(
        n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64, bos_token_id=PAD, eos_token_id=PAD
    )
    settings.update(overrides)
    torch.manual_seed(0)
    return randomise(transformers.GPT2LMHeadModel(transformers.GPT2Config(attn_implementation="eager", **settings)))


def tiny_bert(head: str = "classification", **overrides):
    settings = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        num_labels=3,
        pad_token_id=0,
    )
    settings.update(overrides)
    torch.manual_seed(0)
    config = transformers.BertConfig(attn_implementation="eager", **settings)
    model_class = {
        "classification": transformers.BertForSequenceClassification,
        "pretraining": transformers.BertForPreTraining,
    }
    return randomise(model_class[head](config))


def tiny_marian(**overrides):
    settings = dict(
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        pad_token_id=PAD,
        eos_token_id=0,
        decoder_start_token_id=PAD,
        forced_eos_token_id=None,
        activation_function="swish",  # what the OPUS-MT models' config.json say (the class defaults differ)
        scale_embedding=True,
    )
    settings.update(overrides)
    torch.manual_seed(0)
    model = transformers.MarianMTModel(transformers.MarianConfig(attn_implementation="eager", **settings))
    with torch.no_grad():  # a buffer of zeros by default: make it count
        model.final_logits_bias.normal_()
    return randomise(model)


def save(model, directory, save_tokenizer=None):
    """The model as save_pretrained writes it, with its family's tokenizer beside it (as on the hub)."""
    model.save_pretrained(directory)
    if save_tokenizer is not None:
        save_tokenizer(directory, vocab_size=VOCAB)
    return directory


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory):
    return save(tiny_gpt2(), tmp_path_factory.mktemp("gpt2"), save_gpt2_tokenizer)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    return save(tiny_bert(), tmp_path_factory.mktemp("bert"), save_bert_tokenizer)


@pytest.fixture(scope="session")
def marian_dir(tmp_path_factory):
    return save(tiny_marian(), tmp_path_factory.mktemp("marian"), save_marian_tokenizer)
