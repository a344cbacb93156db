"""BERT in our EncoderClassifier equals transformers' BertForSequenceClassification: logits and attention weights,
with segments and padding; pre-training weights give the same encoder and pooler with a new head."""

import pytest
import torch

from src.pretrained import load_pretrained

from .conftest import VOCAB, save, tiny_bert

TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}


def inputs():
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(1, VOCAB, (3, 10), generator=g)  # id 0 is [PAD]
    token_types = torch.zeros_like(tokens)
    token_types[:, 6:] = 1  # a sentence pair: the second segment
    lengths = [10, 7, 3]
    attention_mask = torch.zeros_like(tokens)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
        tokens[row, length:] = 0
    return tokens, token_types, attention_mask, lengths


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logits_and_attention_equal_huggingface_with_and_without_padding(bert_dir, dtype):
    hf = tiny_bert().to(dtype)
    ours = load_pretrained(str(bert_dir), dtype=dtype).model
    tokens, token_types, attention_mask, lengths = inputs()
    with torch.no_grad():
        theirs = hf(tokens, attention_mask=attention_mask, token_type_ids=token_types, output_attentions=True)
        mine = ours(tokens, need_weights=True, token_types=token_types)
        unpadded = hf(tokens[:1], token_type_ids=token_types[:1])
        no_types = (ours(tokens[:1]).logits, hf(tokens[:1]).logits)  # no types given: all are type 0, as in BERT
    assert (mine.logits - theirs.logits).abs().max().item() <= TOLERANCE[dtype]
    assert (mine.logits[0] - unpadded.logits[0]).abs().max().item() <= TOLERANCE[dtype]
    assert (no_types[0] - no_types[1]).abs().max().item() <= TOLERANCE[dtype]
    for layer, weights in enumerate(mine.attentions["encoder_self"]):
        for row, length in enumerate(lengths):  # the padded queries' rows are never read
            real = weights[row, :, :length]
            torch.testing.assert_close(real, theirs.attentions[layer][row, :, :length], atol=1e-6, rtol=0)


def test_pretraining_weights_load_with_a_new_head_and_the_same_pooler(tmp_path):
    hf = tiny_bert("pretraining").double()
    directory = save(hf, tmp_path / "bert-pretraining")
    pretrained = load_pretrained(str(directory), num_classes=2, dtype=torch.float64)
    assert pretrained.new_head and pretrained.config.num_classes == 2
    tokens = torch.randint(1, VOCAB, (2, 8))
    pooled = {}
    pretrained.model.pooling.register_forward_hook(lambda m, i, o: pooled.update(x=o))
    with torch.no_grad():
        pretrained.model(tokens)
        expected = hf.bert(tokens).pooler_output
    assert (pooled["x"] - expected).abs().max().item() <= 1e-6


def test_masked_lm_weights_load_with_a_new_pooler_and_head_and_the_same_encoder(tmp_path):
    """BertForMaskedLM has no pooler: it starts new with the head, as transformers' BertForSequenceClassification
    starts it from such a checkpoint, and the encoder's output is the checkpoint's."""
    hf = tiny_bert("masked_lm").double()
    directory = save(hf, tmp_path / "bert-mlm")
    assert not any(name.startswith("bert.pooler") for name in hf.state_dict())
    pretrained = load_pretrained(str(directory), num_classes=2, dtype=torch.float64)
    assert pretrained.new_head
    tokens = torch.randint(1, VOCAB, (2, 8))
    encoded = {}
    pretrained.model.pooling.register_forward_hook(lambda m, i, o: encoded.update(x=i[0]))
    with torch.no_grad():
        pretrained.model(tokens)
        expected = hf.bert(tokens).last_hidden_state
    assert (encoded["x"] - expected).abs().max().item() <= 1e-6


def test_the_config_says_what_bert_is(bert_dir):
    cfg = load_pretrained(str(bert_dir)).config
    assert (cfg.arch, cfg.norm_position, cfg.has_final_norm, cfg.activation) == ("encoder_only", "post", False, "gelu")
    assert (cfg.embedding_norm, cfg.token_types, cfg.pooling, cfg.norm_eps) == (True, 2, "first_token", 1e-12)
    assert (cfg.num_classes, cfg.pad_id, cfg.scale_embeddings) == (3, 0, False)
