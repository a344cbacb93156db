"""Turn lists of examples into padded batches (right padding with PAD_ID)."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from .vocab import BOS_ID, EOS_ID, PAD_ID


def pad(sequences: list[torch.Tensor]) -> torch.Tensor:
    """list of (L_i,) long tensors -> (B, max L_i), padded on the right with PAD_ID."""
    return pad_sequence(sequences, batch_first=True, padding_value=PAD_ID)


def collate_seq2seq(examples: list[dict]) -> dict[str, torch.Tensor]:
    """examples: {"src": (S_i,), "tgt": (T_i,)} content ids without specials.

    Teacher forcing: the decoder reads BOS + y and is trained to predict y + EOS, position by position.
    """
    bos = torch.tensor([BOS_ID])
    eos = torch.tensor([EOS_ID])
    return {
        "src": pad([e["src"] for e in examples]),  # (B, S)
        "tgt_in": pad([torch.cat([bos, e["tgt"]]) for e in examples]),  # (B, T)  T = max T_i + 1
        "tgt_out": pad([torch.cat([e["tgt"], eos]) for e in examples]),  # (B, T)
    }


def collate_lm(examples: list[dict]) -> dict[str, torch.Tensor]:
    """examples: {"tokens": (L+1,)} windows of text; predict token t+1 from tokens <= t."""
    tokens = pad([e["tokens"] for e in examples])  # (B, L+1)
    return {"tgt_in": tokens[:, :-1], "tgt_out": tokens[:, 1:]}  # (B, L) each


def collate_classification(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "src": pad([e["src"] for e in examples]),  # (B, S)
        "label": torch.tensor([e["label"] for e in examples], dtype=torch.long),  # (B,)
    }


COLLATE = {"seq2seq": collate_seq2seq, "lm": collate_lm, "classification": collate_classification}
