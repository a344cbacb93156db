"""The offline stand-ins for the GPT-2, BERT, Marian, Llama (and Mistral), Qwen2 and T5 tokenizers
(tests/pretrained/hf_tokenizers.py): AutoTokenizer reads them from a model directory as it reads the real ones, with
each family's special ids where the real ones have them, exactly `vocab_size` entries, and the same files on every
run."""

import warnings

import pytest

from .conftest import PAD, PADDED, VOCAB, transformers
from .hf_tokenizers import (
    ENDOFTEXT,
    GPT2_ALPHABET,
    LLAMA_VOCAB,
    save_bert_tokenizer,
    save_gpt2_tokenizer,
    save_llama_tokenizer,
    save_marian_tokenizer,
    save_qwen2_tokenizer,
    save_t5_tokenizer,
)

ENGLISH = "The café in Zürich opens at 9:30, doesn't it?"
GERMAN = "Können wir morgen früh über die Brücke gehen?"

CONFIGS = {  # config.json of a tiny model of each family, written beside the tokenizer as in a real model directory
    "gpt2": lambda: transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64, bos_token_id=PAD, eos_token_id=PAD
    ),
    "bert": lambda: transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=VOCAB
    ),
    "marian": lambda: transformers.MarianConfig(
        d_model=32, vocab_size=VOCAB, pad_token_id=PAD, eos_token_id=0, decoder_start_token_id=PAD
    ),
    "llama": lambda: transformers.LlamaConfig(
        hidden_size=32, num_attention_heads=4, vocab_size=LLAMA_VOCAB, bos_token_id=1, eos_token_id=2
    ),
    "qwen2": lambda: transformers.Qwen2Config(hidden_size=32, num_attention_heads=4, vocab_size=VOCAB),
    "t5": lambda: transformers.T5Config(d_model=32, vocab_size=VOCAB, pad_token_id=0, eos_token_id=1),
}


def model_dir(tmp_path_factory, family, save, **kwargs):
    directory = tmp_path_factory.mktemp(family)
    CONFIGS[family]().save_pretrained(directory)
    save(directory, **kwargs)
    return directory


def load(directory):
    with warnings.catch_warnings():  # MarianTokenizer recommends sacremoses, its optional punctuation normaliser
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        return transformers.AutoTokenizer.from_pretrained(directory)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return load(model_dir(tmp_path_factory, "gpt2", save_gpt2_tokenizer))


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return load(model_dir(tmp_path_factory, "bert", save_bert_tokenizer))


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    return load(model_dir(tmp_path_factory, "marian", save_marian_tokenizer))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return load(model_dir(tmp_path_factory, "llama", save_llama_tokenizer))


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    return load(model_dir(tmp_path_factory, "qwen2", save_qwen2_tokenizer))


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return load(model_dir(tmp_path_factory, "t5", save_t5_tokenizer))


def test_gpt2_is_a_byte_level_bpe_with_endoftext_as_its_last_id(gpt2):
    assert type(gpt2) is transformers.GPT2TokenizerFast  # in transformers 5 the same class as GPT2Tokenizer
    assert len(gpt2) == VOCAB
    assert gpt2.convert_tokens_to_ids(ENDOFTEXT) == VOCAB - 1 == PAD
    assert gpt2.bos_token_id == gpt2.eos_token_id == gpt2.unk_token_id == VOCAB - 1
    assert gpt2.pad_token is None  # as GPT-2's
    assert gpt2.all_special_tokens == [ENDOFTEXT]
    assert gpt2(ENDOFTEXT)["input_ids"] == [VOCAB - 1]
    for text in (ENGLISH, GERMAN, GPT2_ALPHABET, " leading space and  two spaces "):
        ids = gpt2(text)["input_ids"]
        assert max(ids) < VOCAB - 1 and gpt2.decode(ids) == text
    merged = [token for token in gpt2.convert_ids_to_tokens(gpt2(ENGLISH)["input_ids"]) if len(token) > 1]
    assert merged, "no BPE merge applies to plain English"


def test_gpt2_holds_every_byte_when_the_vocabulary_has_room(tmp_path):
    save_gpt2_tokenizer(tmp_path, vocab_size=300)
    tokenizer = load(tmp_path)
    assert len(tokenizer) == 300 and tokenizer.eos_token_id == 299
    text = "€5 ~ #tag <b> 日本語 \t\n🙂"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_bert_is_an_uncased_wordpiece_with_pad_zero(bert):
    assert type(bert) is transformers.BertTokenizerFast
    assert len(bert) == VOCAB
    specials = [bert.pad_token_id, bert.unk_token_id, bert.cls_token_id, bert.sep_token_id, bert.mask_token_id]
    assert specials == [0, 1, 2, 3, 4]
    ids = bert(ENGLISH)["input_ids"]
    assert ids[0] == bert.cls_token_id and ids[-1] == bert.sep_token_id
    assert bert.unk_token_id not in ids and max(ids) < VOCAB
    plain = bert("The Café in Zürich opens at nine")["input_ids"]  # lowercased and stripped of accents, as BERT's
    assert bert.decode(plain, skip_special_tokens=True) == "the cafe in zurich opens at nine"
    assert any(token.startswith("##") for token in bert.convert_ids_to_tokens(ids))
    pair = bert("one", "two")
    assert pair["input_ids"].count(bert.sep_token_id) == 2 and pair["token_type_ids"][-1] == 1
    never_seen = bert("a € sign")["input_ids"]
    assert never_seen[2] == bert.unk_token_id


def test_marian_has_eos_zero_unk_one_and_pad_last(marian):
    assert type(marian) is transformers.MarianTokenizer
    assert len(marian) == VOCAB
    assert (marian.eos_token_id, marian.unk_token_id, marian.pad_token_id) == (0, 1, VOCAB - 1)
    for text in (GERMAN, ENGLISH):
        ids = marian(text)["input_ids"]
        assert ids[-1] == marian.eos_token_id and ids.count(marian.eos_token_id) == 1
        assert marian.unk_token_id not in ids and max(ids) < VOCAB - 1
        assert marian.decode(ids, skip_special_tokens=True) == text
    labels = marian(text_target=ENGLISH)["input_ids"]
    assert labels[-1] == 0 and marian.decode(labels, skip_special_tokens=True) == ENGLISH
    batch = marian([GERMAN, "Ja."], padding=True)
    short = len(marian("Ja.")["input_ids"])
    assert set(batch["input_ids"][1][short:]) == {VOCAB - 1} and batch["attention_mask"][1][short:][0] == 0
    assert marian("Ω")["input_ids"][-2] == marian.unk_token_id  # a character the texts never had
    # As in OPUS-MT, the sentencepiece model numbers its pieces its own way; vocab.json gives the model's ids.
    assert marian.spm_source.piece_to_id("</s>") == 2 and marian.spm_source.piece_to_id("<unk>") == 0


def test_llama_is_a_bpe_with_byte_fallback_that_puts_bos_in_front(llama):
    assert type(llama) is transformers.LlamaTokenizerFast  # in transformers 5 the same class as LlamaTokenizer
    assert len(llama) == LLAMA_VOCAB
    assert (llama.unk_token_id, llama.bos_token_id, llama.eos_token_id, llama.pad_token) == (0, 1, 2, None)
    assert llama.convert_tokens_to_ids(["<0x00>", "<0xFF>"]) == [3, 258]  # byte fallback's pieces, as Llama 2's
    for text in (ENGLISH, GERMAN):
        ids = llama(text)["input_ids"]
        assert ids[0] == 1 and ids.count(1) == 1 and 2 not in ids and 0 not in ids  # <s> in front, nothing after
        assert llama(text, add_special_tokens=False)["input_ids"] == ids[1:]
        assert llama.decode(ids, skip_special_tokens=True) == text
    english = llama.convert_ids_to_tokens(llama(ENGLISH)["input_ids"])
    assert any(token.startswith("▁") and len(token) > 2 for token in english)  # merged pieces of words
    unseen = llama("日本 €")["input_ids"]  # characters no text had: their UTF-8 bytes, never <unk>
    assert 0 not in unseen and all(3 <= i <= 258 for i in unseen[2:4])
    assert llama.decode(unseen, skip_special_tokens=True) == "日本 €"


def test_qwen2_is_a_byte_level_bpe_with_endoftext_after_its_pieces_and_no_bos(qwen2):
    assert type(qwen2) is transformers.Qwen2TokenizerFast
    assert len(qwen2) == VOCAB - PADDED  # the tiny Qwen2's embedding has PADDED rows more, as Qwen2's
    specials = qwen2.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    assert specials == [VOCAB - PADDED - 3, VOCAB - PADDED - 2, VOCAB - PADDED - 1]
    assert qwen2.eos_token_id == qwen2.pad_token_id == specials[0]
    assert qwen2.bos_token is None and qwen2.unk_token is None
    for text in (ENGLISH, GERMAN):
        ids = qwen2(text)["input_ids"]
        assert ids == qwen2(text, add_special_tokens=False)["input_ids"]  # nothing around a text
        assert max(ids) < specials[0] and qwen2.decode(ids) == text
    assert len(qwen2("2019")["input_ids"]) == 4  # Qwen2's pre-tokenizer reads digits one by one


def test_t5_has_pad_eos_unk_first_and_its_sentinels_last(t5):
    assert type(t5) is transformers.T5TokenizerFast
    assert len(t5) == VOCAB - PADDED  # the tiny T5's embedding has PADDED rows more, as t5-small's 32,128 for 32,100
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id, t5.bos_token) == (0, 1, 2, None)
    sentinels = t5.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"])
    assert sentinels == [VOCAB - PADDED - 1, VOCAB - PADDED - 2, VOCAB - PADDED - 3]  # <extra_id_0> last, as T5's
    for text in (ENGLISH, GERMAN):
        ids = t5(text)["input_ids"]
        assert ids[-1] == 1 and ids.count(1) == 1 and 2 not in ids and max(ids) < sentinels[2]  # </s> appended
        assert t5.decode(ids, skip_special_tokens=True) == text
    assert t5("Ω")["input_ids"][-2] == t5.unk_token_id  # a character the texts never had


@pytest.mark.parametrize(
    "family,save",
    [
        ("gpt2", save_gpt2_tokenizer),
        ("bert", save_bert_tokenizer),
        ("marian", save_marian_tokenizer),
        ("llama", save_llama_tokenizer),
        ("qwen2", save_qwen2_tokenizer),
        ("t5", save_t5_tokenizer),
    ],
)
def test_the_same_files_and_ids_on_every_run(tmp_path_factory, family, save):
    first, second = (model_dir(tmp_path_factory, family, save) for _ in range(2))
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in names)
    assert load(first)(GERMAN)["input_ids"] == load(second)(GERMAN)["input_ids"]


def test_other_texts_and_sizes(tmp_path):
    bert = save_bert_tokenizer(tmp_path / "bert", vocab_size=26, texts=["the cat sat on the mat"])
    assert len(bert) == 26 and {"the", "cat", "sat", "mat"} <= set(bert.get_vocab())  # every word merged
    assert bert.decode(bert("The mat")["input_ids"], skip_special_tokens=True) == "the mat"
    assert bert("the dog")["input_ids"][2] == bert.unk_token_id  # no d, no g in those texts
    marian = save_marian_tokenizer(tmp_path / "marian", vocab_size=200)
    assert len(marian) == 200 and marian.pad_token_id == 199


@pytest.mark.parametrize(
    "save,vocab_size,message",
    [
        (save_gpt2_tokenizer, 50, "cannot hold its 83 base bytes"),
        (save_bert_tokenizer, 30, "does not fit in 25 tokens"),
        (save_marian_tokenizer, 5000, "sentencepiece cannot train 5000 pieces"),
        (save_llama_tokenizer, 300, "cannot hold its 259 special and byte pieces and the 65 characters"),
        (save_qwen2_tokenizer, 80, "cannot hold its 83 base bytes and its 3 special tokens"),
        (save_t5_tokenizer, 5000, "sentencepiece cannot train 4997 pieces"),
    ],
)
def test_a_vocabulary_that_cannot_be_filled_exactly_is_an_error(tmp_path, save, vocab_size, message):
    with pytest.raises(ValueError, match=message):
        save(tmp_path, vocab_size=vocab_size)
