"""Small tokenizers of the pretrained families, trained here, offline, in well under a second each.

The model hub cannot be reached from CI, so the real gpt2, bert-base-uncased, Helsinki-NLP/opus-mt-*, Llama 2,
Mistral, Qwen2, SmolLM, Llama 3 and t5-small tokenizers cannot be downloaded. These stand-ins are built with the same
libraries and the same classes (transformers' GPT2TokenizerFast, BertTokenizerFast, MarianTokenizer,
LlamaTokenizerFast, Qwen2TokenizerFast, PreTrainedTokenizerFast and T5TokenizerFast), on a built-in corpus of a few
dozen sentences, and keep each family's layout of special ids, so code that has to know where a family puts its ids
(GPT-2's <|endoftext|> as the last id, BERT's [PAD] = 0, Marian's </s> = 0 and <pad> as the last id, Llama 2's <unk>
<s> </s> = 0 1 2 and its 256 byte pieces, Qwen2's <|endoftext|> after its BPE pieces and no BOS, SmolLM's
<|endoftext|> = 0 and no BOS, Llama 3's 256 special tokens after its BPE pieces and <|begin_of_text|> put in front by
its post-processor, T5's <pad> </s> <unk> = 0 1 2 and its sentinels <extra_id_N> as the last ids) meets the same
layout it meets with the real files. Each function writes what `save_pretrained` writes into a directory, beside the
config.json and weights of a tiny model of the family (tests/pretrained/conftest.py), so
`AutoTokenizer.from_pretrained(directory)` reads that directory as it reads a downloaded snapshot;
tokenizer_config.json names the class.

Every vocabulary has exactly `vocab_size` entries. For GPT-2, BERT, Marian, Llama, Mistral, SmolLM and Llama 3 that
is the model's vocab_size, as in the real models (every id has a row, and the family's "last id" is the model's last
row); Qwen2's and T5's real embeddings have more rows than their tokenizers have tokens (151,936 for 151,646; 32,128
for 32,100), and their tiny models are padded the same way (conftest.py).

The name: not `tokenizers.py`, which would shadow Hugging Face's library wherever tests/pretrained itself is on
sys.path (transformers would then fail to import).

Determinism: the same arguments give byte-identical files in every process. tokenizers' WordPieceTrainer does not
(see _wordpiece_tokens), so BERT's vocabulary is learnt here in Python; the BPE trainer is deterministic when, as
here, its whole alphabet is given up front; sentencepiece is, with one thread.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

ENGLISH = (
    "The quick brown fox jumps over the lazy dog.",
    "A small model can still learn a lot from a few good examples.",
    "She sold three old books at the market on Saturday morning.",
    "Why does the river look darker after a long rain?",
    "We walked home together, talking about music and films.",
    "It's only a test, so please don't worry about the results!",
    "The train to London leaves at 9:45 from platform 12.",
    "Our neighbours planted apple trees in their garden last spring.",
    "He opened the window; the cold air filled the quiet room.",
    "Reading the same sentence twice helps you understand it better.",
    "Many people drink coffee in the morning and tea in the evening.",
    "The children laughed when the cat jumped onto the table.",
    "Can you tell me where the nearest station is?",
    "Scientists measured the temperature of the water every hour.",
    "In 2019, the city built a new bridge across the river.",
    "My sister writes short stories about ships, storms and islands.",
    "The teacher asked the students to read the first chapter.",
    "Bright stars were shining over the mountains at night.",
    "They ordered a café au lait and a jalapeño sandwich.",
    "The façade of the old hotel was painted white and blue.",
    "Good software is tested, measured and explained with care.",
    "The weather was warm, but the wind from the sea was strong.",
    "Every word in this sentence is separated by a single space.",
    "Please send the report to the office before Friday.",
    "A friend from Zürich brought chocolate and cheese for everyone.",
    "The museum opens at ten and closes at six in the evening.",
    "Learning a language takes patience, practice and time.",
    "The dog slept under the tree while the birds were singing.",
    "Numbers like 3, 14 and 100 appear in this line too.",
    "Do you prefer the mountains or the sea for a holiday?",
    "The engineer checked each part of the machine again.",
    "Two trains, four buses and one boat carried the visitors.",
    "Fresh bread and warm soup are the best meal in winter.",
    "The history of the town is written on the walls of the church.",
    "What matters is not speed but that the answer is correct.",
    "He said: 'The door is open - come in and sit down.'",
)

GERMAN = (
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Ein kleines Modell kann aus wenigen guten Beispielen viel lernen.",
    "Sie verkaufte am Samstagmorgen drei alte Bücher auf dem Markt.",
    "Warum sieht der Fluss nach einem langen Regen dunkler aus?",
    "Wir gingen zusammen nach Hause und sprachen über Musik und Filme.",
    "Es ist nur ein Test, also mach dir keine Sorgen um die Ergebnisse!",
    "Der Zug nach London fährt um 9:45 Uhr von Gleis 12 ab.",
    "Unsere Nachbarn haben im letzten Frühling Apfelbäume gepflanzt.",
    "Er öffnete das Fenster; die kalte Luft füllte das stille Zimmer.",
    "Viele Menschen trinken morgens Kaffee und abends Tee.",
    "Die Kinder lachten, als die Katze auf den Tisch sprang.",
    "Können Sie mir sagen, wo der nächste Bahnhof ist?",
    "Die Wissenschaftler maßen jede Stunde die Temperatur des Wassers.",
    "Im Jahr 2019 baute die Stadt eine neue Brücke über den Fluss.",
    "Meine Schwester schreibt kurze Geschichten über Schiffe und Inseln.",
    "Die Lehrerin bat die Schüler, das erste Kapitel zu lesen.",
    "Helle Sterne leuchteten in der Nacht über den Bergen.",
    "Bitte schicken Sie den Bericht vor Freitag an das Büro.",
    "Eine Sprache zu lernen braucht Geduld, Übung und Zeit.",
    "Der Hund schlief unter dem Baum, während die Vögel sangen.",
    "Frisches Brot und warme Suppe sind im Winter das beste Essen.",
    "Was zählt, ist nicht die Geschwindigkeit, sondern die richtige Antwort.",
)

# GPT-2's base alphabet at a small vocab_size (see save_gpt2_tokenizer): ASCII letters and digits, the space, common
# punctuation, and the accented letters of German, French and Spanish.
GPT2_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"-" + "äöüßéèêàçñ"
ENDOFTEXT = "<|endoftext|>"
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0-4: [PAD] = 0 as in bert-base-uncased
MARIAN_EOS, MARIAN_UNK, MARIAN_PAD = "</s>", "<unk>", "<pad>"
LLAMA_SPECIALS = ("<unk>", "<s>", "</s>")  # ids 0-2, as in Llama 2 and Mistral
LLAMA_BYTES = tuple(f"<0x{byte:02X}>" for byte in range(256))  # ids 3-258: byte fallback's pieces
LLAMA_VOCAB = 389  # the fixed 259, the 65 characters of the built-in texts and 65 merges (odd, as the tiny models')
QWEN2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # the last three ids, as Qwen2's
T5_PAD, T5_EOS, T5_UNK = "<pad>", "</s>", "<unk>"  # ids 0-2, as T5's
# SmolLM's 17 special tokens, ids 0-16 (HuggingFaceTB/SmolLM-135M and -360M): <|endoftext|> is its bos, eos and unk
SMOLLM_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>", "<filename>",
    "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>", "<jupyter_text>",
    "<jupyter_code>", "<jupyter_output>", "<jupyter_script>", "<empty_output>",
)  # fmt: skip
SMOLLM_VOCAB = 131  # the 17 special tokens, the 83 base bytes (as GPT-2's at 97) and 31 merges
# Llama 3's 256 special tokens after its regular ones (128,000 of them, here LLAMA3_REGULAR), named as in Llama 3.1
# and 3.2: <|begin_of_text|> (bos, put in front of every text), <|end_of_text|> (eos), the instruct models' header and
# end-of-turn marks, and the reserved rest.
LLAMA3_NAMED = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 4: "<|finetune_right_pad_id|>", 6: "<|start_header_id|>",
                7: "<|end_header_id|>", 8: "<|eom_id|>", 9: "<|eot_id|>", 10: "<|python_tag|>"}  # fmt: skip


def _llama3_specials() -> tuple[str, ...]:
    """The 256: the named ones at their places, <|reserved_special_token_0|> ... _247 filling the others in order."""
    reserved = iter(f"<|reserved_special_token_{i}|>" for i in range(256 - len(LLAMA3_NAMED)))
    return tuple(LLAMA3_NAMED[i] if i in LLAMA3_NAMED else next(reserved) for i in range(256))


LLAMA3_SPECIALS = _llama3_specials()
LLAMA3_REGULAR = 333  # the 256 bytes and 77 merges (odd, as the tiny models')
LLAMA3_VOCAB = LLAMA3_REGULAR + len(LLAMA3_SPECIALS)
# Llama 3's pre-tokenizer (tiktoken's, as its tokenizer.json has it): contractions, words with one leading
# non-letter, numbers of up to three digits, punctuation runs with their leading space, line breaks, spaces.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def save_gpt2_tokenizer(directory: str | os.PathLike, vocab_size: int = 97, texts: Iterable[str] | None = None):
    """A byte-level BPE like GPT-2's (GPT2TokenizerFast), saved into `directory`; returns the tokenizer.

    As in GPT-2 (whose <|endoftext|> is 50256, the last of 50257), <|endoftext|> is the last id, vocab_size - 1,
    and is the bos, eos and unk token; there is no pad token.

    GPT-2's base alphabet is all 256 bytes, so every string encodes. Where vocab_size leaves room for them
    (vocab_size >= 257) this one's is too. A smaller one (the tiny models' 97) cannot hold them: its alphabet is the
    bytes of GPT2_ALPHABET and of the training texts (83 with the built-in texts, which use no others), and
    merges fill the rest (13 at 97).
    English text, digits, common punctuation and German/French/Spanish accents round-trip exactly; a byte outside
    the alphabet is DROPPED on encoding (transformers 5 rebuilds GPT2Tokenizer's BPE without an unk token when it
    loads one, so a byte it does not know vanishes rather than becoming <|endoftext|>).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    texts = list(ENGLISH if texts is None else texts)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = _byte_level_alphabet(texts, vocab_size - 1, f"a GPT-2 tokenizer of vocab_size {vocab_size}", ENDOFTEXT)

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1, initial_alphabet=alphabet, special_tokens=[], show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    _check_size(tokenizer.get_vocab_size(), vocab_size - 1, "GPT-2 BPE vocabulary before <|endoftext|>")
    tokenizer.add_special_tokens([AddedToken(ENDOFTEXT, special=True)])

    hf = GPT2TokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        model_max_length=1024,  # GPT-2's n_positions
    )
    _check_size(len(hf), vocab_size, "GPT-2 tokenizer")
    hf.save_pretrained(directory)
    return hf


def save_bert_tokenizer(directory: str | os.PathLike, vocab_size: int = 97, texts: Iterable[str] | None = None):
    """A lowercasing WordPiece tokenizer like bert-base-uncased's (BertTokenizerFast), saved into `directory`;
    returns the tokenizer.

    [PAD] = 0 as in bert-base-uncased, then [UNK] = 1, [CLS] = 2, [SEP] = 3, [MASK] = 4 (bert-base-uncased keeps
    [UNK], [CLS], [SEP], [MASK] at 100-103 behind 99 unused slots, which a vocabulary of 97 cannot). A sentence
    encodes as [CLS] ... [SEP]; as in BERT, text is lowercased and accents stripped, and a word with a character
    the training texts never had comes out as [UNK].
    """
    from tokenizers import normalizers, pre_tokenizers
    from transformers import BertTokenizerFast

    texts = list(ENGLISH if texts is None else texts)
    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(word for text in texts for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    tokens = [*BERT_SPECIALS, *_wordpiece_tokens(words, vocab_size - len(BERT_SPECIALS))]
    vocab = {token: i for i, token in enumerate(tokens)}
    _check_size(len(vocab), vocab_size, "BERT WordPiece vocabulary")

    # BertTokenizerFast builds its own normalizer, pre-tokenizer, decoder and [CLS] ... [SEP] template around the
    # vocabulary, exactly as it does when it loads bert-base-uncased.
    hf = BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=512)
    _check_size(len(hf), vocab_size, "BERT tokenizer")
    hf.save_pretrained(directory)
    return hf


def save_marian_tokenizer(directory: str | os.PathLike, vocab_size: int = 97, texts: Iterable[str] | None = None):
    """A MarianTokenizer as Helsinki-NLP/opus-mt-* models ship it (source.spm, target.spm, vocab.json), saved into
    `directory`; returns the tokenizer.

    A sentencepiece unigram model is trained on the German and English texts (the built-in ones by default) and
    serves as both source.spm and target.spm, as in the OPUS-MT models with a shared vocabulary. As there,
    vocab.json, not the sentencepiece ids, gives the model's ids: </s> = 0 (eos), <unk> = 1, the pieces, and <pad>
    last (vocab_size - 1; opus-mt's pad 58100 is the last of 58101). The sentencepiece model keeps its own ids
    (<unk> = 0, <s> = 1, </s> = 2, the pieces), so code that mistook them for the model's would be caught. Encoding
    appends </s>.
    """
    import sentencepiece
    from transformers import MarianTokenizer

    texts = list(ENGLISH + GERMAN if texts is None else texts)
    # The pieces are the sentencepiece vocabulary less <unk>, <s> and </s>; vocab.json adds </s>, <unk> and <pad>.
    model = io.BytesIO()  # trained in memory: sentencepiece writes no files, and its log goes to /dev/null
    with open(os.devnull, "w") as quiet:
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(texts),
                model_writer=model,
                logstream=quiet,
                model_type="unigram",
                vocab_size=vocab_size,
                character_coverage=1.0,  # every character of the texts, accents included, is a piece
                num_threads=1,  # one thread: the same pieces on every run
                unk_id=0,
                bos_id=1,
                eos_id=2,
                pad_id=-1,
            )
        except RuntimeError as error:  # "Vocabulary size too high (…). Please set it to a value <= …", and the like
            raise ValueError(f"sentencepiece cannot train {vocab_size} pieces on these texts: {error}") from error
    processor = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    if pieces[:3] != ["<unk>", "<s>", "</s>"]:
        raise AssertionError(f"sentencepiece put its control pieces elsewhere: {pieces[:3]}")
    vocab = {MARIAN_EOS: 0, MARIAN_UNK: 1, **{piece: 2 + i for i, piece in enumerate(pieces[3:])}}
    vocab[MARIAN_PAD] = len(vocab)
    _check_size(len(vocab), vocab_size, "Marian vocab.json")

    with tempfile.TemporaryDirectory() as scratch:  # MarianTokenizer reads its files from paths
        spm = Path(scratch, "model.spm")
        spm.write_bytes(model.getvalue())
        Path(scratch, "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")
        with warnings.catch_warnings():  # MarianTokenizer recommends sacremoses, its optional punctuation normaliser
            warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
            hf = MarianTokenizer(
                source_spm=str(spm),
                target_spm=str(spm),
                vocab=str(Path(scratch, "vocab.json")),
                source_lang="de",
                target_lang="en",
                model_max_length=512,
            )
        _check_size(len(hf), vocab_size, "Marian tokenizer")
        hf.save_pretrained(directory)  # copies the .spm files out of the scratch directory
    return hf


def save_llama_tokenizer(
    directory: str | os.PathLike, vocab_size: int = LLAMA_VOCAB, texts: Iterable[str] | None = None
):
    """A sentencepiece-style BPE with byte fallback like Llama 2's and Mistral's (LlamaTokenizerFast), saved into
    `directory`; returns the tokenizer.

    As in Llama 2 (32,000 ids): <unk> = 0, <s> = 1, </s> = 2, then the 256 byte pieces <0x00> ... <0xFF> (ids 3-258),
    then the pieces learnt from the texts, each character of them and merges, a word's first piece starting with "▁"
    (Metaspace). A character without a piece is read as the pieces of its UTF-8 bytes (byte fallback), so every
    string encodes and decodes. Encoding puts <s> in front of a text, and nothing after it, as Llama 2's
    tokenizer_config.json says (add_bos_token, not add_eos_token); there is no pad token. vocab_size must hold the
    259 fixed ids and every character of the texts (324 with the built-in ones); merges fill the rest (65 at 389).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizerFast

    texts = list(ENGLISH if texts is None else texts)
    fixed = [*LLAMA_SPECIALS, *LLAMA_BYTES]
    alphabet = sorted({char for text in texts for char in text.replace(" ", "▁")} | {"▁"})
    if len(fixed) + len(alphabet) > vocab_size:
        raise ValueError(
            f"a Llama tokenizer of vocab_size {vocab_size} cannot hold its {len(fixed)} special and byte pieces and "
            f"the {len(alphabet)} characters of the texts: give a larger vocab_size or texts with fewer characters"
        )
    # Trained on words (split=True), as sentencepiece learns pieces within words: no merge spans a "▁" inside it, so
    # LlamaTokenizerFast's own pre-tokenizer (the whole text one piece, split=False) finds the same pieces.
    tokenizer = Tokenizer(models.BPE(unk_token=LLAMA_SPECIALS[0], byte_fallback=True, fuse_unk=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=fixed, initial_alphabet=alphabet, show_progress=False
    )  # the special tokens take the first ids, in order: <unk> <s> </s> <0x00> ... <0xFF>
    tokenizer.train_from_iterator(texts, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    _check_size(len(model["vocab"]), vocab_size, "Llama BPE vocabulary")

    # LlamaTokenizerFast builds Llama's pipeline around the vocabulary and merges (Metaspace, byte fallback, its
    # decoder), as it does when it loads Llama 2's files; add_bos_token writes the <s> template into tokenizer.json.
    hf = LlamaTokenizerFast(
        vocab=model["vocab"],
        merges=[tuple(merge) for merge in model["merges"]],
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=4096,  # Llama 2's context
    )
    _check_size(len(hf), vocab_size, "Llama tokenizer")
    hf.save_pretrained(directory)
    return hf


def save_qwen2_tokenizer(directory: str | os.PathLike, vocab_size: int = 94, texts: Iterable[str] | None = None):
    """A byte-level BPE like Qwen2's (Qwen2TokenizerFast), saved into `directory`; returns the tokenizer.

    As in Qwen2 (151,643 BPE pieces, then <|endoftext|> = 151643, <|im_start|>, <|im_end|>): the BPE pieces, trained
    with Qwen2's pre-tokenizer (its regular expression: digits one by one, words with their leading space) and NFC
    normaliser, then <|endoftext|>, <|im_start|> and <|im_end|> as the last three ids. <|endoftext|> is the eos and
    pad token; there is no bos and no unk token, and encoding adds nothing around a text. The base alphabet is as
    GPT-2's (save_gpt2_tokenizer): every byte where vocab_size - 3 leaves room for 256, else the bytes of
    GPT2_ALPHABET and the texts (a byte outside them is dropped on encoding). The default 94 is the tiny Qwen2's 97
    rows less 3, as Qwen2's embedding is padded past its tokenizer.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    texts = list(ENGLISH if texts is None else texts)
    room = vocab_size - len(QWEN2_SPECIALS)
    alphabet = _byte_level_alphabet(
        texts, room, f"a Qwen2 tokenizer of vocab_size {vocab_size}", f"its {len(QWEN2_SPECIALS)} special tokens"
    )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )  # Qwen2TokenizerFast's own, with which it reads the pieces back
    trainer = trainers.BpeTrainer(vocab_size=room, initial_alphabet=alphabet, special_tokens=[], show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    _check_size(len(model["vocab"]), room, "Qwen2 BPE vocabulary before its special tokens")

    endoftext, *chat = QWEN2_SPECIALS
    hf = Qwen2TokenizerFast(
        vocab=model["vocab"],
        merges=[tuple(merge) for merge in model["merges"]],
        unk_token=None,
        bos_token=None,
        eos_token=endoftext,
        pad_token=endoftext,
        extra_special_tokens=chat,
        errors="replace",
        model_max_length=32768,  # Qwen2's tokenizer_config.json
    )
    _check_size(len(hf), vocab_size, "Qwen2 tokenizer")
    hf.save_pretrained(directory)
    return hf


def save_smollm_tokenizer(
    directory: str | os.PathLike, vocab_size: int = SMOLLM_VOCAB, texts: Iterable[str] | None = None
):
    """A byte-level BPE like SmolLM's (GPT2TokenizerFast, as its tokenizer_config.json names it), saved into
    `directory`; returns the tokenizer.

    As in HuggingFaceTB/SmolLM-135M and -360M (49,152 ids): the 17 special tokens first, <|endoftext|> = 0 (the bos,
    eos and unk token), <|im_start|> = 1, <|im_end|> = 2, <repo_name> ... <empty_output> = 3-16, then the byte-level
    BPE pieces, learnt with SmolLM's pre-tokenizer (digits one by one, then GPT-2's byte-level split). There is no pad
    token, and encoding adds nothing around a text: SmolLM's <|endoftext|> only ever separates documents. The base
    alphabet is as GPT-2's (save_gpt2_tokenizer): every byte where vocab_size - 17 leaves room for 256, else the bytes
    of GPT2_ALPHABET and the texts, a byte outside them dropped on encoding (as SmolLM's own vocabulary drops the
    bytes it lacks).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2TokenizerFast

    texts = list(ENGLISH if texts is None else texts)
    room = vocab_size - len(SMOLLM_SPECIALS)
    alphabet = _byte_level_alphabet(
        texts, room, f"a SmolLM tokenizer of vocab_size {vocab_size}", f"its {len(SMOLLM_SPECIALS)} special tokens"
    )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=alphabet, special_tokens=list(SMOLLM_SPECIALS), show_progress=False
    )  # the special tokens take the first ids, in order
    tokenizer.train_from_iterator(texts, trainer)
    _check_size(tokenizer.get_vocab_size(), vocab_size, "SmolLM BPE vocabulary")

    endoftext = SMOLLM_SPECIALS[0]
    hf = GPT2TokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=endoftext,
        eos_token=endoftext,
        unk_token=endoftext,
        additional_special_tokens=list(SMOLLM_SPECIALS),
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
        model_max_length=2048,  # SmolLM's context
    )
    _check_size(len(hf), vocab_size, "SmolLM tokenizer")
    hf.save_pretrained(directory)
    return hf


def save_llama3_tokenizer(
    directory: str | os.PathLike,
    vocab_size: int = LLAMA3_VOCAB,
    texts: Iterable[str] | None = None,
    instruct: bool = False,
):
    """A tiktoken-style byte-level BPE like Llama 3's, 3.1's and 3.2's (PreTrainedTokenizerFast, as their
    tokenizer_config.json names it), saved into `directory`; returns the tokenizer.

    As in meta-llama/Llama-3.2-1B (128,256 ids): the regular pieces first, every one of the 256 bytes and merges
    learnt with Llama 3's pre-tokenizer (LLAMA3_PATTERN, then the byte-level mapping; the BPE model looks a whole
    pre-token up before merging, ignore_merges), then the 256 special tokens (LLAMA3_SPECIALS: <|begin_of_text|> =
    vocab_size - 256, <|end_of_text|> the next). Its tokenizer.json's post-processor puts <|begin_of_text|> in front of
    every text (a TemplateProcessing after the ByteLevel offsets fix), and nothing after it; there is no pad and no unk
    token. The eos token is <|end_of_text|>, or the end of a turn, <|eot_id|>, for an `instruct` model's tokenizer. As
    in Meta's files, tokenizer_config.json sets clean_up_tokenization_spaces (a WordPiece-era tidying that, where
    applied, drops the space before punctuation) and names the class PreTrainedTokenizerFast.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(ENGLISH if texts is None else texts)
    regular = vocab_size - len(LLAMA3_SPECIALS)
    if regular < 256:
        raise ValueError(
            f"a Llama 3 tokenizer of vocab_size {vocab_size} cannot hold its 256 bytes and its "
            f"{len(LLAMA3_SPECIALS)} special tokens: give a vocab_size of at least {256 + len(LLAMA3_SPECIALS)}"
        )
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer_tokenizer = Tokenizer(models.BPE())
    trainer_tokenizer.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=regular, initial_alphabet=_byte_level_alphabet(texts, 256), special_tokens=[], show_progress=False
    )  # the bytes take the first ids in GPT-2's printable order ("!" = 0), as tiktoken's ranks do
    trainer_tokenizer.train_from_iterator(texts, trainer)
    model = json.loads(trainer_tokenizer.to_str())["model"]
    _check_size(len(model["vocab"]), regular, "Llama 3 BPE vocabulary before its special tokens")

    # The pipeline of Meta's tokenizer.json (transformers' Llama 3 conversion writes it so)
    tokenizer = Tokenizer(
        models.BPE(vocab=model["vocab"], merges=[tuple(merge) for merge in model["merges"]], ignore_merges=True)
    )
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in LLAMA3_SPECIALS])
    bos = LLAMA3_SPECIALS[0]
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, regular)]
            ),
        ]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos,
        eos_token="<|eot_id|>" if instruct else "<|end_of_text|>",
        clean_up_tokenization_spaces=True,
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=131072,  # Llama 3.1's and 3.2's context
    )
    _check_size(len(hf), vocab_size, "Llama 3 tokenizer")
    hf.save_pretrained(directory)
    # transformers 5 writes its own name of the class (TokenizersBackend), which Meta's files predate
    _update_json(Path(directory, "tokenizer_config.json"), tokenizer_class="PreTrainedTokenizerFast")
    return hf


def save_t5_tokenizer(
    directory: str | os.PathLike, vocab_size: int = 94, texts: Iterable[str] | None = None, extra_ids: int = 3
):
    """A sentencepiece unigram tokenizer like T5's (T5TokenizerFast), saved into `directory`; returns the tokenizer.

    As in t5-small (32,000 sentencepiece ids, then <extra_id_99> ... <extra_id_0> up to 32,099): a unigram model is
    trained on the English and German texts with T5's ids, <pad> = 0, </s> = 1, <unk> = 2 and the pieces after them,
    and `extra_ids` sentinels end the vocabulary in reverse, so that <extra_id_0> is the last id (vocab_size - 1).
    Encoding appends </s>; sentencepiece's NFKC normalisation is kept as T5's tokenizer.json keeps it. The default
    94 is the tiny T5's 97 rows less 3, as T5's embedding (32,128 rows) is padded past its 32,100 tokens.
    """
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2
    from transformers import T5TokenizerFast

    texts = list(ENGLISH + GERMAN if texts is None else texts)
    pieces_wanted = vocab_size - extra_ids
    model = io.BytesIO()  # trained in memory, as Marian's (save_marian_tokenizer)
    with open(os.devnull, "w") as quiet:
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(texts),
                model_writer=model,
                logstream=quiet,
                model_type="unigram",
                vocab_size=pieces_wanted,
                character_coverage=1.0,
                num_threads=1,  # one thread: the same pieces on every run
                pad_id=0,
                eos_id=1,
                unk_id=2,
                bos_id=-1,  # T5 has no bos
            )
        except RuntimeError as error:
            raise ValueError(f"sentencepiece cannot train {pieces_wanted} pieces on these texts: {error}") from error
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    pieces = [(piece.piece, piece.score) for piece in proto.pieces]
    if [piece for piece, _ in pieces[:3]] != [T5_PAD, T5_EOS, T5_UNK]:
        raise AssertionError(f"sentencepiece put its control pieces elsewhere: {pieces[:3]}")
    sentinels = [(f"<extra_id_{i}>", 0.0) for i in reversed(range(extra_ids))]
    # T5TokenizerFast builds T5's pipeline around the scored pieces (whitespace split, Metaspace, the </s> template),
    # as it does when it loads t5-small's files.
    hf = T5TokenizerFast(
        vocab=pieces + sentinels,
        extra_ids=extra_ids,
        _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap,
        model_max_length=512,  # t5-small's
    )
    _check_size(len(hf), vocab_size, "T5 tokenizer")
    hf.save_pretrained(directory)
    return hf


def _byte_level_alphabet(texts: list[str], room: int, tokenizer: str = "", beside: str = "") -> list[str]:
    """The base symbols of a byte-level BPE (GPT-2's printable stand-ins for bytes): all 256 where `room` holds
    them, else those of GPT2_ALPHABET and the texts. More than `room` of them: a ValueError naming `tokenizer` and
    what takes the other ids (`beside`)."""
    from tokenizers import pre_tokenizers

    if room >= 256:
        return pre_tokenizers.ByteLevel.alphabet()
    unsplit = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    alphabet = sorted({char for text in [GPT2_ALPHABET, *texts] for char in unsplit.pre_tokenize_str(text)[0][0]})
    if len(alphabet) > room:
        raise ValueError(
            f"{tokenizer} cannot hold its {len(alphabet)} base bytes and {beside}: give a larger vocab_size or texts "
            "with fewer distinct characters"
        )
    return alphabet


def _wordpiece_tokens(words: Counter[str], size: int) -> list[str]:
    """What tokenizers' WordPieceTrainer learns (BPE merges over words split into a first character and ##-prefixed
    continuations), but deterministic: that trainer numbers the ##-characters in the order of a Rust hash map, which
    changes from one run to the next, and breaks ties between merges by those numbers, so its vocabulary does too.
    Here ties go to the alphabetically first pair. Every character of the words is a token, and a ##-token where it
    continues a word (as the trainer has it); the merges fill the rest of `size`."""
    split = {word: [word[0], *("##" + char for char in word[1:])] for word in words}
    alphabet = {char for word in words for char in word} | {piece for pieces in split.values() for piece in pieces}
    tokens = sorted(alphabet, key=lambda token: (token.startswith("##"), token))
    if len(tokens) > size:
        raise ValueError(
            f"the alphabet of the BERT training texts ({len(tokens)} characters and ##-continuations) does not fit "
            f"in {size} tokens beside the special ones"
        )
    while len(tokens) < size:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, pieces in split.items():
            for pair in zip(pieces, pieces[1:]):
                pairs[pair] += words[word]
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merged = best[0] + best[1][2:]
        for pieces in split.values():
            i = 0
            while i < len(pieces) - 1:
                if (pieces[i], pieces[i + 1]) == best:
                    pieces[i : i + 2] = [merged]
                i += 1
        if merged not in tokens:
            tokens.append(merged)
    return tokens


def _update_json(path: Path, **settings) -> None:
    """Set `settings` in the JSON file at `path`, keeping the rest as save_pretrained wrote it."""
    content = json.loads(path.read_text(encoding="utf-8"))
    content.update(settings)
    path.write_text(json.dumps(content, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _check_size(size: int, wanted: int, what: str) -> None:
    if size != wanted:
        raise ValueError(
            f"the {what} has {size} entries, not {wanted}: the training texts are too few or too varied for this "
            "vocab_size; give other texts or another vocab_size"
        )


__all__ = [
    "save_gpt2_tokenizer",
    "save_bert_tokenizer",
    "save_marian_tokenizer",
    "save_llama_tokenizer",
    "save_qwen2_tokenizer",
    "save_smollm_tokenizer",
    "save_llama3_tokenizer",
    "save_t5_tokenizer",
]
