"""Tokens as the attention page and the TensorBoard attention maps label them (token_strings): the text each piece
stands for, without its tokenizer's private marks (GPT-2's "Ġ" and "Ċ", SentencePiece's "▁", BERT's "##"), one label
a piece, so the boundaries stay where the tokenizer put them."""

from __future__ import annotations

import pytest

from src.data.tokenizer import train_tokenizer
from src.data.vocab import SymbolVocab, display_token

MARKS = ("Ġ", "Ċ", "▁", "##")
TEXT = "The quick brown fox jumps over the lazy dog"


@pytest.mark.parametrize(
    "token,marks,label",
    [
        ("Ġworld", "byte_level", "world"),  # a space before it: the start of a word
        ("Ġ", "byte_level", "␣"),  # a piece that is a space shows it
        ("ĠĠ", "byte_level", "␣␣"),
        ("Ċ", "byte_level", "\\n"),  # a newline
        ("Ã", "byte_level", "\\xc3"),  # one byte of "ü" (its other piece is "¼")
        ("<|endoftext|>", "byte_level", "<|endoftext|>"),
        ("▁Welt", "metaspace", "Welt"),
        ("▁", "metaspace", "␣"),
        ("lich", "metaspace", "lich"),
        ("##ing", "wordpiece", "ing"),
        ("##", "wordpiece", "##"),  # the characters "##" themselves
        ("[CLS]", "wordpiece", "[CLS]"),
        (" ", None, "␣"),  # our symbols: a character as it is, whitespace made visible
        ("\n", None, "\\n"),
        ("<bos>", None, "<bos>"),
    ],
)
def test_a_token_is_labelled_by_the_text_it_stands_for(token, marks, label):
    assert display_token(token, marks) == label


def labels_keep_the_text(labels: list[str], text: str) -> bool:
    """The labels, spaces aside, spell the text: nothing of it lost or added but the marks."""
    return "".join(labels).replace("␣", "") == text.replace(" ", "")


def test_our_bpe_pieces_are_shown_without_the_word_start_mark():
    tokenizer = train_tokenizer([TEXT] * 20, kind="bpe", vocab_size=60, lowercase=False)
    ids = tokenizer.encode(TEXT)
    labels = tokenizer.token_strings(ids)
    assert "▁" in "".join(tokenizer.tokenizer.id_to_token(i) for i in ids)  # what the labels are made from
    assert len(labels) == len(ids) and not any(mark in label for label in labels for mark in MARKS)
    assert labels_keep_the_text(labels, TEXT)


def test_symbols_and_words_are_shown_as_they_are():
    assert SymbolVocab(list("ab \n")).token_strings([4, 5, 6, 7, 0]) == ["a", "b", "␣", "\\n", "<pad>"]
    words = train_tokenizer([TEXT] * 5, kind="word", vocab_size=60, lowercase=False)
    assert words.token_strings(words.encode("The lazy dog")) == ["The", "lazy", "dog"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """family -> a PretrainedTokenizer of the tiny GPT-2, BERT and Marian tokenizers (tests/pretrained)."""
    pytest.importorskip("transformers", reason="the optional group: pip install -e '.[pretrained]'")
    from transformers import AutoTokenizer

    from src.data.pretrained_tokenizer import PretrainedTokenizer
    from src.model.tokens import SpecialIds
    from tests.pretrained.hf_tokenizers import save_bert_tokenizer, save_gpt2_tokenizer, save_marian_tokenizer

    made = {}
    for family, save in (
        ("gpt2", save_gpt2_tokenizer),
        ("bert", save_bert_tokenizer),
        ("marian", save_marian_tokenizer),
    ):
        directory = tmp_path_factory.mktemp(family)
        save(directory)
        made[family] = PretrainedTokenizer(AutoTokenizer.from_pretrained(directory), SpecialIds(0, 0, 0, 0))
    return made


def test_gpt2_pieces_show_no_byte_level_marks(pretrained):
    """The issue's example: GPT-2's tokens showed the tokenizer's "Ġ" markers."""
    tokenizer = pretrained["gpt2"]
    ids = tokenizer.encode(TEXT)
    pieces = tokenizer.tokenizer.convert_ids_to_tokens(ids)
    assert any(piece.startswith("Ġ") for piece in pieces)  # what the labels are made from
    labels = tokenizer.token_strings(ids)
    assert len(labels) == len(ids) and not any(mark in label for label in labels for mark in MARKS)
    assert labels_keep_the_text(labels, TEXT)
    # A character spread over two byte pieces: each piece shows its byte, and they are told apart
    split = [label for label in tokenizer.token_strings(tokenizer.encode("Zürich")) if label.startswith("\\x")]
    assert split == ["\\xc3", "\\xbc"]


def test_bert_and_marian_pieces_show_no_marks_and_keep_the_special_tokens(pretrained):
    bert = pretrained["bert"]
    labels = bert.token_strings(bert.wrap_source(bert.encode(TEXT)))
    assert labels[0] == "[CLS]" and labels[-1] == "[SEP]"
    assert not any(mark in label for label in labels[1:-1] for mark in MARKS)
    assert labels_keep_the_text(labels[1:-1], TEXT.lower())  # bert-base-uncased lowercases
    marian = pretrained["marian"]
    labels = marian.token_strings(marian.wrap_source(marian.encode(TEXT)))
    assert labels[-1] == "</s>" and not any(mark in label for label in labels for mark in MARKS)
    assert labels_keep_the_text(labels[:-1], TEXT)
