"""Learned tokenizers: special ids, round trips, save/reload gives identical ids."""

from __future__ import annotations

import pytest

from src.data import DataError
from src.data.tokenizer import TOKENIZER_FILE, SubwordTokenizer, load_or_train_tokenizer, train_tokenizer
from src.data.vocab import SymbolVocab
from src.model.tokens import BOS_ID, EOS_ID, PAD_ID, UNK_ID

TEXTS = [
    "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    "Two young, White males are outside near many bushes.",
    "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
    "A man in an orange hat starring at something.",
] * 5


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_special_tokens_have_the_shared_ids(kind):
    tok = train_tokenizer(TEXTS, kind, vocab_size=200, lowercase=False)
    for token, expected in [("<pad>", PAD_ID), ("<bos>", BOS_ID), ("<eos>", EOS_ID), ("<unk>", UNK_ID)]:
        assert tok.tokenizer.token_to_id(token) == expected
    assert tok.token_strings([PAD_ID, BOS_ID, EOS_ID, UNK_ID]) == ["<pad>", "<bos>", "<eos>", "<unk>"]


def test_bpe_round_trip_restores_text_exactly():
    tok = train_tokenizer(TEXTS, "bpe", vocab_size=300, lowercase=False)
    for text in TEXTS[:4] + ["Männer near bushes, im Freien."]:
        ids = tok.encode(text)
        assert all(i > UNK_ID for i in ids)  # every character was seen in training: no specials, no <unk>
        assert tok.decode(ids) == text
        assert tok.decode([BOS_ID] + ids + [EOS_ID, PAD_ID, PAD_ID]) == text
    assert tok.encode("") == []


def test_unknown_characters_become_unk_and_stay_visible():
    tok = train_tokenizer(TEXTS, "bpe", vocab_size=300, lowercase=False)
    ids = tok.encode("man ☃")
    assert UNK_ID in ids and "<unk>" in tok.decode(ids)


def test_lowercase_option():
    tok = train_tokenizer(TEXTS, "bpe", vocab_size=300, lowercase=True)
    assert tok.decode(tok.encode("Two Young MEN")) == "two young men"


def test_saved_tokenizer_reloads_with_identical_ids(tmp_path):
    first = load_or_train_tokenizer(tmp_path, TEXTS, "bpe", 300, False)
    assert (tmp_path / TOKENIZER_FILE).exists()
    # Different texts: the saved tokenizer must be loaded, not retrained.
    again = load_or_train_tokenizer(tmp_path, ["completely other words"], "bpe", 300, False)
    for text in TEXTS[:4]:
        assert again.encode(text) == first.encode(text)
    assert again.size == first.size
    assert SubwordTokenizer.load(tmp_path / TOKENIZER_FILE).encode(TEXTS[0]) == first.encode(TEXTS[0])


def test_corrupt_saved_tokenizer_is_a_clear_error(tmp_path):
    (tmp_path / TOKENIZER_FILE).write_text("{not json")
    with pytest.raises(DataError, match="delete it to retrain"):
        load_or_train_tokenizer(tmp_path, TEXTS, "bpe", 300, False)


def test_bad_tokenizer_settings():
    with pytest.raises(DataError, match="vocab_size"):
        train_tokenizer(TEXTS, "bpe", vocab_size=4, lowercase=False)
    with pytest.raises(DataError, match="word' or 'bpe"):
        train_tokenizer(TEXTS, "unigram", vocab_size=100, lowercase=False)


def test_symbol_vocab_round_trip_and_save(tmp_path):
    vocab = SymbolVocab(list("ab \n"))
    assert vocab.size == 8
    assert vocab.decode(vocab.encode("a b\nba")) == "a b\nba"
    assert vocab.token_strings(vocab.encode("a \n")) == ["a", "␣", "\\n"]
    assert vocab.encode("az") == [4, UNK_ID]
    vocab.save(tmp_path / "vocab.json")
    assert SymbolVocab.load(tmp_path / "vocab.json").symbols == vocab.symbols


def test_a_bpe_vocabulary_larger_than_asked_gets_one_warning(capsys):
    """BPE keeps the training text's alphabet whatever vocab_size asks (task=translation task.vocab_size=5 trained
    with 20 tokens, without a word): one warning with the size it has and the setting that is honoured."""
    tok = train_tokenizer(TEXTS, "bpe", vocab_size=5, lowercase=False)
    letters = len({ch for text in TEXTS for ch in text.replace(" ", "")}) + 1  # and the word mark "▁"
    assert tok.size == 4 + letters
    assert capsys.readouterr().err.splitlines() == [
        f"warning: task.vocab_size=5 is smaller than a BPE vocabulary of this text can be: it keeps every character "
        f"of the training text ({letters} here) besides the 4 special tokens, so it has {tok.size} tokens and no "
        f"merges: give task.vocab_size={tok.size} or more to have the setting honoured (above it, merges are learned)"
    ]
    train_tokenizer(TEXTS, "word", vocab_size=5, lowercase=False)  # the word tokenizer keeps at most vocab_size
    train_tokenizer(TEXTS, "bpe", vocab_size=tok.size, lowercase=False)
    assert capsys.readouterr().err == ""
