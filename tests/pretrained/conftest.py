"""Small random-weight models of each family, built by transformers itself and saved as save_pretrained writes
them (config.json + model.safetensors): the model hub is not reachable from CI, and the loading code reads a
local directory exactly as it reads a downloaded snapshot."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the optional group: pip install -e '.[pretrained]'")

from .hf_tokenizers import (  # noqa: E402
    LLAMA3_REGULAR,
    LLAMA3_VOCAB,
    LLAMA_VOCAB,
    SMOLLM_VOCAB,
    save_bert_tokenizer,
    save_gpt2_tokenizer,
    save_llama3_tokenizer,
    save_llama_tokenizer,
    save_marian_tokenizer,
    save_qwen2_tokenizer,
    save_smollm_tokenizer,
    save_t5_tokenizer,
)

VOCAB = 97  # small and odd (no accidental power-of-two alignments); the last id is Marian's pad
PAD = VOCAB - 1
# Qwen2's and T5's embeddings have rows past their tokenizer's last token (151,936 for Qwen2's 151,646 tokens;
# 32,128 for T5's 32,100): their tiny models have VOCAB rows and their tokenizers VOCAB - PADDED tokens, so the rows
# VOCAB - PADDED ... VOCAB - 1 are ids without a token, as there.
PADDED = 3
QWEN2_ENDOFTEXT = VOCAB - PADDED - 3  # the first of the Qwen2 tokenizer's three special tokens, after its BPE pieces
LLAMA3_BOS = LLAMA3_REGULAR  # <|begin_of_text|>, the first of Llama 3's special tokens (128000), <|end_of_text|> next


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
        "masked_lm": transformers.BertForMaskedLM,  # no pooler
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


def tiny_decoder(family: str, **overrides):
    """A tiny Llama-shaped model of `family` (llama, qwen2, mistral): grouped-query attention (2 KV heads of 4), a
    RoPE base and scaling a family uses, and each family's own twist (Qwen2's Q, K, V biases; Mistral's window)."""
    settings = dict(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=VOCAB, max_position_embeddings=64, bos_token_id=1, eos_token_id=PAD, pad_token_id=None,
        rms_norm_eps=1e-6, tie_word_embeddings=False,
    )  # fmt: skip
    family_settings = {
        "llama": dict(
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            }
        ),  # fmt: skip
        "qwen2": dict(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True),
        "mistral": dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, sliding_window=5),
    }[family]
    settings.update(family_settings)
    settings.update(overrides)
    classes = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    }
    config_class, model_class = classes[family]
    torch.manual_seed(0)
    return randomise(model_class(config_class(attn_implementation="eager", **settings)))


def save(model, directory, save_tokenizer=None, tokens: int = VOCAB):
    """The model as save_pretrained writes it, with its family's tokenizer of `tokens` tokens beside it (as on the
    hub)."""
    model.save_pretrained(directory)
    if save_tokenizer is not None:
        save_tokenizer(directory, vocab_size=tokens)
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


@pytest.fixture(scope="session", params=["llama", "qwen2", "mistral"])
def decoder_family(request, tmp_path_factory):
    """(family, directory) of each Llama-shaped family's tiny model, saved as save_pretrained writes it."""
    return request.param, save(tiny_decoder(request.param), tmp_path_factory.mktemp(request.param))


# Each Llama-shaped family's vocabulary and special ids as its own tokenizer has them (hf_tokenizers.py): Llama 2 and
# Mistral <s> = 1 and </s> = 2 in a vocabulary with Llama's 256 byte pieces (as many rows as tokens, as theirs);
# Qwen2 <|endoftext|> as its bos and eos (as Qwen2's config.json), VOCAB rows for VOCAB - PADDED tokens. None has a
# pad token. tiny_decoder's own ids (GPT-2's layout: eos = pad = the last id) serve the model-level proofs
# (test_llama_family.py), which read no text.
# SmolLM and Llama 3 are Llama models (model_type llama) with tokenizers of their own, and their config.json's ids:
# SmolLM's <|endoftext|> = 0 as bos and eos, its embedding tied, RoPE unscaled (SmolLM-135M's); Llama 3's
# <|begin_of_text|> and <|end_of_text|> after its regular tokens, tied and with the llama3 RoPE scaling (Llama 3.2
# 1B's and 3B's). Their weights start 25 times larger than transformers' (initializer_range): with a tied embedding of
# small random rows, greedy decoding settles on one token at once, which would prove little.
TIED_SCALE = dict(tie_word_embeddings=True, initializer_range=0.5)
DECODER_TOKENIZERS = {
    "llama": (save_llama_tokenizer, LLAMA_VOCAB, dict(vocab_size=LLAMA_VOCAB, bos_token_id=1, eos_token_id=2)),
    "mistral": (save_llama_tokenizer, LLAMA_VOCAB, dict(vocab_size=LLAMA_VOCAB, bos_token_id=1, eos_token_id=2)),
    "qwen2": (
        save_qwen2_tokenizer,
        VOCAB - PADDED,
        dict(vocab_size=VOCAB, bos_token_id=QWEN2_ENDOFTEXT, eos_token_id=QWEN2_ENDOFTEXT),
    ),
    "smollm": (
        save_smollm_tokenizer,
        SMOLLM_VOCAB,
        dict(
            vocab_size=SMOLLM_VOCAB,
            bos_token_id=0,
            eos_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            **TIED_SCALE,
        ),
    ),
    "llama3": (
        save_llama3_tokenizer,
        LLAMA3_VOCAB,
        dict(vocab_size=LLAMA3_VOCAB, bos_token_id=LLAMA3_BOS, eos_token_id=LLAMA3_BOS + 1, **TIED_SCALE),
    ),
}
MODEL_FAMILY = {"smollm": "llama", "llama3": "llama"}  # the tokenizer layouts that are not a model family's name


def tiny_tokenized_decoder(name: str, **overrides):
    """tiny_decoder of the family of `name` (MODEL_FAMILY) with the vocabulary and special ids of its tokenizer
    (DECODER_TOKENIZERS)."""
    return tiny_decoder(MODEL_FAMILY.get(name, name), **{**DECODER_TOKENIZERS[name][2], **overrides})


def save_tokenized_decoder(name: str, directory):
    save_tokenizer, tokens, _ = DECODER_TOKENIZERS[name]
    return save(tiny_tokenized_decoder(name), directory, save_tokenizer, tokens)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    return save_tokenized_decoder("llama", tmp_path_factory.mktemp("llama_tokenized"))


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory):
    return save_tokenized_decoder("qwen2", tmp_path_factory.mktemp("qwen2_tokenized"))


@pytest.fixture(scope="session")
def mistral_dir(tmp_path_factory):
    return save_tokenized_decoder("mistral", tmp_path_factory.mktemp("mistral_tokenized"))


@pytest.fixture(scope="session")
def smollm_dir(tmp_path_factory):
    return save_tokenized_decoder("smollm", tmp_path_factory.mktemp("smollm_tokenized"))


@pytest.fixture(scope="session")
def llama3_dir(tmp_path_factory):
    return save_tokenized_decoder("llama3", tmp_path_factory.mktemp("llama3_tokenized"))


# T5's own special ids: pad 0 (also the decoder's start), eos 1.
T5_PAD, T5_EOS = 0, 1
# t5-small's config.json names the tasks it was trained on, each with the prefix its sources began with (the rest of
# each entry is the pipelines' generation settings). Flan-T5's names none: it reads instructions.
T5_TASKS = {
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 200, "min_length": 30,
                      "no_repeat_ngram_size": 3, "num_beams": 4, "prefix": "summarize: "},
    "translation_en_to_de": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to German: "},
    "translation_en_to_fr": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to French: "},
    "translation_en_to_ro": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to Romanian: "},
}  # fmt: skip


def tiny_t5(style: str = "t5", **overrides):
    """A tiny T5 of each style. "t5", the original: ReLU FFN, the output matrix tied to the embedding with the
    decoder's output scaled by d_model^-0.5, 8 heads of 4, T5's 32 buckets up to distance 128. "flan", T5 v1.1 and
    Flan-T5: the gated GELU, an lm_head of its own, unscaled, 6 heads of 4 in d_model 32 (24 wide: as Flan-T5-small's
    6 of 64 in 512), a deeper decoder than encoder, and 10 buckets up to distance 12, so that short sequences reach the
    far buckets (10: not a multiple of 4, so each direction's 5 halve unevenly, as T5 allows). Heads of 4: the
    sqrt(d_kv) = 2 folded into W^Q is exact in float32, as T5's sqrt(64) = 8 is."""
    settings = dict(
        d_model=32, d_kv=4, num_heads=8, d_ff=48, num_layers=2, num_decoder_layers=2, vocab_size=VOCAB,
        pad_token_id=T5_PAD, eos_token_id=T5_EOS, decoder_start_token_id=T5_PAD, initializer_factor=2.0,
    )  # fmt: skip
    # initializer_factor: weights twice transformers' initial ones, and relative position biases ten times (below),
    # so that greedy decoding of these random models does not settle on one token at once
    settings |= {
        "t5": dict(feed_forward_proj="relu", tie_word_embeddings=True, task_specific_params=T5_TASKS),
        "flan": dict(
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
            num_heads=6,
            num_decoder_layers=3,
            relative_attention_num_buckets=10,
            relative_attention_max_distance=12,
        ),  # fmt: skip
    }[style]
    settings |= overrides
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(attn_implementation="eager", **settings))
    if not settings["tie_word_embeddings"] and model.lm_head.weight is model.shared.weight:
        # transformers 5 ties T5's lm_head to the embedding unless a checkpoint holds another one: give it its own
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_attention_bias" in name:
                p.mul_(10.0)
    return randomise(model)


@pytest.fixture(scope="session", params=["t5", "flan"])
def t5_style(request, tmp_path_factory):
    """(style, directory) of each T5 style's tiny model (tiny_t5), saved as save_pretrained writes it."""
    return request.param, save(tiny_t5(request.param), tmp_path_factory.mktemp(f"t5_{request.param}"))


@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory):
    """The original T5's tiny model (tiny_t5("t5")) with its tokenizer: VOCAB - PADDED tokens for VOCAB rows."""
    return save(tiny_t5("t5"), tmp_path_factory.mktemp("t5_tokenized"), save_t5_tokenizer, VOCAB - PADDED)


@pytest.fixture(scope="session")
def flan_t5_dir(tmp_path_factory):
    """Flan-T5's tiny model (tiny_t5("flan")) with T5's tokenizer, which Flan-T5 shares."""
    return save(tiny_t5("flan"), tmp_path_factory.mktemp("flan_t5_tokenized"), save_t5_tokenizer, VOCAB - PADDED)
