"""Turn lists of examples into padded batches (right padding with the vocabulary's pad id): one function per task
kind, which its TaskKind names (registry.KINDS)."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from src.model.tokens import OUR_SPECIAL_IDS, SpecialIds


def pad(sequences: list[torch.Tensor], pad_id: int) -> torch.Tensor:
    """list of (L_i,) long tensors -> (B, max L_i), padded on the right with pad_id."""
    return pad_sequence(sequences, batch_first=True, padding_value=pad_id)


def length_mask(lengths: list[int], width: int) -> torch.Tensor:
    """(B, width) bool, True at the first lengths[i] positions of row i: the targets that are not padding. From the
    lengths, not the ids, since a pretrained tokenizer's pad may be a real token too (GPT-2's <|endoftext|>)."""
    return torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]


def collate_seq2seq(examples: list[dict], specials: SpecialIds = OUR_SPECIAL_IDS) -> dict[str, torch.Tensor]:
    """examples: {"src": (S_i,), "tgt": (T_i,)}: the source as the model reads it (with a pretrained tokenizer's
    own marks, e.g. Marian's </s>), the target's content ids without specials.

    Teacher forcing: the decoder reads BOS + y and is trained to predict y + EOS, position by position.
    """
    bos = torch.tensor([specials.bos])
    eos = torch.tensor([specials.eos])
    tgt_out = pad([torch.cat([e["tgt"], eos]) for e in examples], specials.pad)  # (B, T)
    return {
        "src": pad([e["src"] for e in examples], specials.pad),  # (B, S)
        "tgt_in": pad([torch.cat([bos, e["tgt"]]) for e in examples], specials.pad),  # (B, T)  T = max T_i + 1
        "tgt_out": tgt_out,
        "tgt_real": length_mask([len(e["tgt"]) + 1 for e in examples], tgt_out.size(1)),  # (B, T)
    }


def collate_lm(examples: list[dict], specials: SpecialIds = OUR_SPECIAL_IDS) -> dict[str, torch.Tensor]:
    """examples: {"tokens": (L+1,)} windows of text; predict token t+1 from tokens <= t."""
    tokens = pad([e["tokens"] for e in examples], specials.pad)  # (B, L+1)
    real = length_mask([len(e["tokens"]) - 1 for e in examples], tokens.size(1) - 1)  # (B, L)
    return {"tgt_in": tokens[:, :-1], "tgt_out": tokens[:, 1:], "tgt_real": real}  # (B, L) each


def collate_classification(examples: list[dict], specials: SpecialIds = OUR_SPECIAL_IDS) -> dict[str, torch.Tensor]:
    return {
        "src": pad([e["src"] for e in examples], specials.pad),  # (B, S)
        "label": torch.tensor([e["label"] for e in examples], dtype=torch.long),  # (B,)
    }
