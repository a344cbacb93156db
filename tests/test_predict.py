"""src.predict on a whole file and src.eval's sacrebleu score, on a tiny translation run trained here: the file is
translated line for line in batches, and the BLEU that eval reports is sacrebleu's own score of those lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

from tests.conftest import run_in_process
from tests.e2e.conftest import TINY, parallel_lines

BEAM = ["decode.strategy=beam", "decode.beam_size=3"]


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, data folder) of a tiny German-English run on made-up sentences."""
    root = tmp_path_factory.mktemp("translation")
    for split, n, seed in (("train", 120, 0), ("val", 16, 1), ("test", 24, 2)):
        src, tgt = parallel_lines(n, seed)
        (root / f"{split}.de").write_text("\n".join(src) + "\n")
        (root / f"{split}.en").write_text("\n".join(tgt) + "\n")
    files = [
        f"task.{split}_{side}={root / f'{split}.{lang}'}"
        for split in ("train", "val", "test")
        for side, lang in (("src", "de"), ("tgt", "en"))
    ]
    run_dir = root / "run"
    # long enough for a BLEU of about 10 here, so the comparison below is between real numbers, not zeros
    longer = [o for o in TINY if not o.startswith(("trainer.max_steps=", "model.d_model="))]
    args = ["task=translation", *files, "task.vocab_size=120", "task.max_len=16", *longer]
    args += ["trainer.max_steps=200", "model.d_model=32", "test_after_fit=true", *BEAM]
    code, out, err = run_in_process("src.run", *args, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    return run_dir / "checkpoints" / "last.ckpt", root


def test_a_file_is_translated_line_for_line_in_batches(translation_run, tmp_path):
    ckpt, data = translation_run
    lines = (data / "test.de").read_text().splitlines()
    source = tmp_path / "in.de"
    source.write_text("\n".join([lines[0], "", *lines[1:5]]) + "\n")  # an empty line keeps its place
    output = tmp_path / "out.en"
    code, out, err = run_in_process(
        "src.predict", f"ckpt={ckpt}", f"input={source}", f"output={output}", "batch_size=2"
    )
    assert code == 0, err
    translated = output.read_text().splitlines()
    assert len(translated) == 6 and translated[1] == "" and all(translated[i] for i in (0, 2, 3, 4, 5))
    assert "1 empty line(s)" in err and "6 lines written" in err
    code, out, err = run_in_process("src.predict", f"ckpt={ckpt}", f"text={lines[3]}")
    assert code == 0 and out.strip() == translated[4]  # the same as translating it alone

    code, out, err = run_in_process("src.predict", f"ckpt={ckpt}", f"input={source}", f"output={output}")
    assert code == 2 and "already exists" in err and output.read_text().splitlines() == translated  # kept


def test_eval_reports_sacrebleu_of_the_beam_translations_with_its_signature(translation_run, tmp_path):
    ckpt, data = translation_run
    hypotheses = tmp_path / "test.hyp.en"
    code, _, err = run_in_process(
        "src.predict", f"ckpt={ckpt}", f"input={data / 'test.de'}", f"output={hypotheses}", *BEAM
    )
    assert code == 0, err
    expected = BLEU().corpus_score(hypotheses.read_text().splitlines(), [(data / "test.en").read_text().splitlines()])

    code, out, err = run_in_process("src.eval", f"ckpt={ckpt}", *BEAM)
    assert code == 0, err
    summary = next(line for line in out.splitlines() if line.startswith("sacreBLEU on test"))
    assert "24 sentences, beam search (3 beams" in summary and "nrefs:1|case:mixed|eff:no|tok:13a" in summary
    assert f": {expected.score:.2f} (lowercased" in summary
    assert expected.score > 1.0  # the model translates something
    printed = dict(line.strip().split(": ") for line in out.splitlines() if line.strip().startswith("test/"))
    assert float(printed["test/sacrebleu"]) == pytest.approx(expected.score, abs=1e-4)


def test_a_run_with_test_after_fit_scores_its_test_split_with_sacrebleu_and_logs_it(translation_run):
    ckpt, _ = translation_run
    run_dir = ckpt.parents[1]
    summary = next(line for line in (run_dir / "run.log").read_text().splitlines() if line.startswith("sacreBLEU"))
    assert summary.startswith("sacreBLEU on test (24 sentences, beam search (3 beams")
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    assert f": {final['test/sacrebleu']:.2f} (lowercased {final['test/sacrebleu_lowercase']:.2f})" in summary
