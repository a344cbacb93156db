"""The special token ids of the framework's own vocabularies (src/data/vocab.py puts them first, in this order).

The model never uses these constants: it reads its `TransformerConfig.pad_id / bos_id / eos_id` (whose defaults they
are), which a pretrained model takes from its own tokenizer (GPT-2 has no pad token, and its id 0 is a real word)."""

from dataclasses import dataclass

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3


@dataclass(frozen=True)
class SpecialIds:
    """A vocabulary's special token ids, as the data layer uses them (padding, the decoder's start, the end, and
    what unknown text is read as). Ours are the constants above; a pretrained tokenizer brings its own."""

    pad: int = PAD_ID
    bos: int = BOS_ID  # the token a decoder input starts from (Marian: its pad token)
    eos: int = EOS_ID
    unk: int = UNK_ID
    # Further ids that end a text as eos does: the model's stop_ids (config.json's further eos ids) and a
    # tokenizer's own eos where it is another (Llama 3.1 instruct: <|eot_id|>, <|eom_id|>)
    stops: tuple[int, ...] = ()

    @property
    def ends(self) -> set[int]:
        """Every id that ends a text."""
        return {self.eos, *self.stops}


OUR_SPECIAL_IDS = SpecialIds()
