"""Corpus BLEU as translation papers report it: sacrebleu on the detokenized output of a whole split against its
raw reference lines, with sacrebleu's signature (which settings made the number) beside it.

Validation during training keeps its cheaper greedy `val/bleu` (sacreBLEU's statistics on references decoded from
the token ids, metrics.py); this is the figure to publish: any decoding (greedy or beam search), cased and
lowercased, as `<split>/sacrebleu` and `<split>/sacrebleu_lowercase`. A command that scores a split here shows no
other BLEU of that split (metrics.py: one metric, one name), and says with the number what it is: the split, the
sentence count, the decoding and the signature (BleuScore.notes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sacrebleu.metrics import BLEU

from src.training.inference import translate_in_batches


@dataclass
class BleuScore:
    split: str
    cased: float
    lowercased: float
    signature: str  # sacrebleu's, e.g. nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0
    decoding: str  # e.g. "beam search (4 beams, length penalty 0.6)"
    hypotheses: list[str]

    def metrics(self) -> dict[str, float]:
        return {f"{self.split}/sacrebleu": self.cased, f"{self.split}/sacrebleu_lowercase": self.lowercased}

    def notes(self) -> dict[str, str]:
        """What each of metrics()' numbers is, for print_metrics (src/training/report.py): the one place a reader
        learns which BLEU, which decoding, which split and how many sentences."""
        decoding = "greedy decoding" if self.decoding == "greedy" else self.decoding
        about = f"sacreBLEU of {len(self.hypotheses):,} {self.split} sentences, {decoding}, against the raw references"
        return {
            f"{self.split}/sacrebleu": f"{about}, cased; signature {self.signature}",
            f"{self.split}/sacrebleu_lowercase": f"{about}, lowercased",
        }

    def summary(self) -> str:
        return (
            f"sacreBLEU on {self.split} ({len(self.hypotheses)} sentences, {self.decoding}): {self.cased:.2f} "
            f"(lowercased {self.lowercased:.2f}); signature {self.signature}"
        )


def describe_decoding(decode: Mapping) -> str:
    if decode["strategy"] == "beam":
        return f"beam search ({decode['beam_size']} beams, length penalty {decode['length_penalty']})"
    return str(decode["strategy"])


def has_references(datamodule, split: str) -> bool:
    return bool(datamodule.task.references.get(split))


def score_split(module, datamodule, split: str, decode: Mapping, batch_size: int = 64) -> BleuScore:
    """Translate every source of `split` with the `decode` settings (strategy, beam_size, length_penalty,
    max_new_tokens) and score it against the split's raw references."""
    examples = getattr(datamodule.task, split)
    references = datamodule.task.references[split]
    sources = [examples[i]["src"].tolist() for i in range(len(examples))]
    settings = {
        key: decode[key]
        for key in ("strategy", "beam_size", "length_penalty", "max_new_tokens", "no_repeat_ngram_size")
        if key in decode
    }
    outputs = translate_in_batches(module.model, sources, batch_size=batch_size, **settings)
    hypotheses = [datamodule.decode_tgt(out) for out in outputs]
    cased = BLEU()
    score = cased.corpus_score(hypotheses, [references])
    lowercased = BLEU(lowercase=True).corpus_score(hypotheses, [references])
    return BleuScore(
        split, score.score, lowercased.score, str(cased.get_signature()), describe_decoding(decode), hypotheses
    )
