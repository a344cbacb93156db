"""Use a checkpoint: `python -m src.predict ckpt=... text="..."`, or a whole file: `input=<file> [output=<file>]`.

    seq2seq tasks (copy, reverse, ..., translation): translate `text`, or every line of `input`, in batches
    char_lm:        continue `text` (empty text: start from scratch), or each line of `input`
    classification: the predicted label and the class probabilities (a file: one label per line)

Decoding is chosen by config: decode.strategy=greedy (default) | beam (decode.beam_size, decode.length_penalty)
| sample (decode.temperature, decode.top_k, decode.top_p; num_samples=N draws N continuations of `text`); a
setting the chosen strategy does not read gets one warning. A classifier does not decode: another strategy or
num_samples > 1 is refused, and its input is each whole line (a line ending in TAB and a label gets a warning).
A file is read whole and checked before any decoding; output line i belongs to input line i (an empty input line
gives an empty output line), and the output file appears only once every line is done. Ctrl-C is one line and exit
status 130, saying what was not written and the command that runs it again (src/cli/interrupts.py).

Every input is read as the task's own training and evaluation data were (datamodule.encode_input): the same line is
the same ids, so predict on a split's lines gives what src.eval scored. Pieces outside the vocabulary are read as
<unk> where the data read them so, with one warning; long inputs are cut as the data were, with one warning. The
text itself is taken as typed, never as Hydra syntax (src/cli/free_text.py).

`ablate.*` switches heads or sublayers off while predicting, on top of what the checkpoint was trained without, as
in src.eval; `ablated: ...` on stderr says what is off.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: Ctrl-C during the imports below is one line (src/cli/startup.py)
    from src.cli.startup import quiet_until_started

    quiet_until_started()

import contextlib
import gc

collecting_before = gc.isenabled()  # restored once the imports are done
gc.disable()  # while the imports below run (see gc.freeze() after them)

import logging
import os
import shlex
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from src.cli.command_line import CONF_DIR, run_hydra_command, user_errors_as_one_line
from src.cli.interrupts import ctrl_c_as_one_line, said_until_the_process_ends
from src.cli.schema import DecodeConfig, register_configs
from src.cli.validation import (
    check_ablation,
    check_finite_settings,
    check_seed,
    check_threads,
    given_decode_settings,
    validate_decode,
    warn_unused_decode_settings,
)
from src.data.files import read_lines, resolve_path
from src.data.registry import task_kind
from src.model import ConfigError, generate
from src.provenance import command_line, module_command, shell_override
from src.training.inference import classify_in_batches, eval_mode, translate_in_batches
from src.training.report import print_warning, quiet_lightning

# As in src/run.py: what the imports made is frozen, so no garbage collection scans it again.
gc.freeze()
if collecting_before:
    gc.enable()

register_configs()
quiet_lightning()


def check_readable(datamodule, texts: list[str], where: list[str]) -> None:
    """Pieces of the texts outside the model's vocabulary are read as <unk> where the task's own data read such
    pieces so (a learned tokenizer: one warning names them), and refused where no data ever held one (a synthetic
    task's symbols, a char_lm's characters: the model cannot read it at all)."""
    vocab = datamodule.vocab(datamodule.input_side)
    unknown: dict[str, None] = {}  # every piece once, in the order met
    lines_with_unknown = 0
    for text, place in zip(texts, where):
        pieces = vocab.unknown_pieces(datamodule.text_as_read(text))
        if pieces and not vocab.reads_unknown_as_unk:
            shown = ", ".join(repr(piece) for piece in pieces[:10])
            raise ConfigError(
                f"{place} has {len(pieces)} {vocab.piece_name}(s) the model has no token for ({shown}): no data it "
                "was trained on held one, so it cannot read them: leave them out or replace them"
            )
        lines_with_unknown += bool(pieces)
        unknown.update(dict.fromkeys(pieces))
    if unknown:
        shown = ", ".join(repr(piece) for piece in list(unknown)[:10]) + (", ..." if len(unknown) > 10 else "")
        which = "text has" if where == ["text"] else f"{lines_with_unknown} of {len(texts)} lines have"
        print_warning(
            f"{which} {len(unknown)} {vocab.piece_name}(s) outside the model's vocabulary, read as <unk> as its "
            f"training and evaluation data read them: {shown}"
        )


def warn_if_cut(datamodule, encoded: list[tuple[list[int], int]], single_text: bool) -> None:
    """One warning for every text longer than the model reads (they were cut, not refused)."""
    cut = [(len(ids), full) for ids, full in encoded if len(ids) < full]
    if not cut:
        return
    which = "first" if task_kind(datamodule.kind).reads_source else "last"  # an lm keeps the end of its prompt
    kept = max(k for k, _ in cut)
    if single_text:
        full = cut[0][1]
        print_warning(f"text is {full} tokens and the model reads at most {kept}: only the {which} {kept} are used")
    else:
        print_warning(
            f"{len(cut)} of {len(encoded)} lines are longer than the model reads ({kept} tokens): "
            f"only the {which} {kept} of each are used"
        )


def read_inputs(datamodule, texts: list[str], where: list[str]) -> list[list[int]]:
    """The ids the model reads for each text: made by the datamodule exactly as the task's training and evaluation
    data were (the same line is the same ids everywhere), with one warning for each surprise."""
    check_readable(datamodule, texts, where)
    encoded = [datamodule.encode_input(text) for text in texts]
    warn_if_cut(datamodule, encoded, single_text=where == ["text"])
    return [ids for ids, _ in encoded]


def with_content(inputs: list[list[int]], where: list[str], needed: str) -> list[int]:
    """The indices of the inputs that hold something to read. Empty lines of a file keep their place with an empty
    output line (one warning says how many); an empty text is an error."""
    wanted = [i for i, ids in enumerate(inputs) if ids]
    if not wanted:
        raise ConfigError(f"{where[0] if len(where) == 1 else 'input'} is empty: give {needed}")
    if len(wanted) < len(inputs):
        print_warning(f"{len(inputs) - len(wanted)} empty line(s): their output lines are empty too")
    return wanted


def read_texts(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """The texts to predict for, and where each is from (`text`, or `<file>:<line>`): text=..., or every line of
    input=<file>, read as the task's data files are."""
    if cfg.text is not None:
        return [cfg.text], ["text"]
    if resolve_path(cfg.input).is_dir():  # read_lines would say "file not found" of a folder that is there
        raise ConfigError(f"input={cfg.input} is a directory: give a file in it, whose lines are the texts")
    texts = read_lines(cfg.input, "input", group="")
    return texts, [f"{cfg.input}:{n}" for n in range(1, len(texts) + 1)]


def check_output(cfg: DictConfig) -> Path | None:
    """Where the results go; never over the input or over an earlier result."""
    if cfg.output is None:
        return None
    if cfg.input is None:
        raise ConfigError("output= needs input=<file>: give input=<file>, or leave output out (text=... is printed)")
    out = Path(cfg.output).expanduser()
    if out.is_dir():  # not "already exists": the user meant a file in it, or mistook the setting
        raise ConfigError(
            f"output={cfg.output} is a directory: give a file name, e.g. output={out / 'predictions.txt'}"
        )
    if out.exists():
        raise ConfigError(f"output={cfg.output} already exists: choose a new name or delete it first")
    if not out.parent.is_dir():
        raise ConfigError(f"output={cfg.output}: the folder {out.parent} does not exist: create it or choose another")
    return out


def check_attention_page(cfg: DictConfig) -> Path | None:
    """Where the attention page goes (attention=<file.html>): a new file in an existing folder, for one text."""
    if cfg.attention is None:
        for name in ("target", "attention_site"):
            if cfg[name] is not None:
                raise ConfigError(f"{name}= is a setting of the attention page: add attention=<file.html>, or drop it")
        return None
    if cfg.text is None:
        raise ConfigError("attention= draws the attention on one text: give text=... (not input=<file>)")
    if cfg.target is not None and not cfg.target.strip():
        raise ConfigError("target= is empty: give the decoder side's text, or leave target= out (the model's output)")
    page = Path(cfg.attention).expanduser()
    if page.is_dir():
        raise ConfigError(f"attention={cfg.attention} is a directory: give a file name, e.g. {page / 'attention.html'}")
    if page.exists():
        raise ConfigError(f"attention={cfg.attention} already exists: choose a new name or delete it first")
    if not page.parent.is_dir():
        raise ConfigError(
            f"attention={cfg.attention}: the folder {page.parent} does not exist: create it or choose another"
        )
    if page.suffix.lower() not in (".html", ".htm"):
        print_warning(
            f"attention={cfg.attention} is written as an HTML page: a name ending in .html opens in a browser"
        )
    return page


def check_attention_site(site: str, model) -> None:
    """attention_site= must be one of the model's own attention sites."""
    from src.model.config import ARCHITECTURES
    from src.model.head_mask import attention_sites

    sites = list(attention_sites(model))
    if site not in sites:
        raise ConfigError(
            f"attention_site={site}: this {ARCHITECTURES[model.cfg.arch].title} model has {', '.join(sites)}: "
            "choose one of them"
        )


def analysis_dir_of(ckpt: str, checkpoint: dict, folder: str = "analysis") -> Path:
    """Where src.analyze writes the analysis of `ckpt` into `folder` (analysis, patching: src/analyze.py's ANALYSES
    and find_targets): <run>/<folder> for a run directory or a checkpoint in its run's checkpoints/, <checkpoint
    name>_<folder> beside a checkpoint moved away from its run."""
    from src.training.checkpoint import run_dir_of

    path = resolve_path(ckpt).resolve()
    if path.is_dir():
        return path / folder
    run_dir = run_dir_of(str(path), checkpoint)
    if path.parent == run_dir / "checkpoints":
        return run_dir / folder
    return path.parent / f"{path.stem}_{folder}"


def write_attention_page(cfg: DictConfig, page: Path, module, datamodule, checkpoint: dict, ablation) -> None:
    """The attention on cfg.text, with the run's head importance when it has an analysis, into `page`. The page says
    what it shows: the model and checkpoint, what the model made of the text, and what the head numbers are."""
    from src.dashboard.explorer import (
        analysis_for,
        attention_on_text,
        describe_model,
        holds_head_analysis,
        holds_patching,
        read_importance,
        read_patching,
        write_page,
    )
    from src.model.ablation import layout_of

    translates = task_kind(datamodule.kind).translates  # a decoder side apart from the input, which target= gives
    if cfg.target is not None and not translates:
        print_warning(f"target= is not used: a {datamodule.kind} model has no decoder side to give")
    target = cfg.target if translates else None
    if translates and target is None and cfg.decode.strategy != "greedy":
        print_warning(
            f"the attention page shows the greedy output, not decode.strategy={cfg.decode.strategy}'s: give "
            'target="..." to show another'
        )
    view, cuts = attention_on_text(module.model, datamodule, cfg.text, target, max_new_tokens=cfg.decode.max_new_tokens)
    view.start_site = cfg.attention_site
    for line in cuts:
        print_warning(line)
    # The page's top line: the task (a pretrained model read without one has none), the model, the checkpoint.
    pretrained = checkpoint["hyper_parameters"].get("pretrained") or {}
    step = checkpoint.get("global_step")
    task = [] if pretrained.get("reading_only") else [datamodule.task_cfg.name]
    at_step = f", step {step}" if isinstance(step, int) and step > 0 else ""
    view.about = " · ".join([*task, describe_model(module.model), f"checkpoint {cfg.ckpt}{at_step}"])
    # What the number on each head is, or why there is none (text in `backticks` is a command on the page).
    if pretrained:
        view.importance_about = (
            f"No number on the heads: a pretrained model read as it is (ckpt={cfg.ckpt}) has no run whose analysis "
            "of its heads the page could show."
        )
    else:
        # The ablation in force on the page's model, as ablate_trained_model put it there and as each analysis's
        # summary.json records its own: the analysis measured with it is the one shown, else the page says so.
        in_force = ablation.describe(layout_of(module.model_cfg))  # as ablate_trained_model put it on the model
        where = analysis_for(analysis_dir_of(cfg.ckpt, checkpoint), in_force, step, holds_head_analysis)
        analysis = read_importance(where, in_force)
        if analysis is None:
            view.importance_about = (
                f"No number on the heads: this checkpoint has no analysis of its heads ({where}); "
                f"`{module_command('src.analyze', shell_override('ckpt', cfg.ckpt))}` measures their importance; "
                "then write this page again."
            )
        else:
            view.importance, view.head_notes, view.importance_about = analysis.values, analysis.notes, analysis.about
            if analysis.step is not None and isinstance(step, int) and analysis.step != step:
                print_warning(
                    f"the head importance on the page is the analysis of step {analysis.step} ({where}), and the "
                    f"page's checkpoint is at step {step}: the page says so beside the numbers"
                )
                view.importance_about += f" The page's checkpoint is at step {step}."
            if analysis.ablation is not None and analysis.ablation != in_force:
                print_warning(
                    f"the head importance on the page was measured with {analysis.ablation} ({where}), and the "
                    f"page's model has {in_force}: the page says so beside the numbers"
                )
        # activation patching (src.analyze analysis=patching): the fraction each head restores, beside importance
        patching = analysis_for(analysis_dir_of(cfg.ckpt, checkpoint, "patching"), in_force, step, holds_patching)
        view.patching = read_patching(patching, step, in_force)
        if view.patching is not None and view.patching.step is not None and view.patching.step != step:
            print_warning(
                f"the patching results on the page are of step {view.patching.step}, and the page's checkpoint is at "
                f"step {step}: the page says so beside the numbers"
            )
        if view.patching is not None and view.patching.ablation is not None and view.patching.ablation != in_force:
            print_warning(
                f"the patching results on the page were measured with {view.patching.ablation} ({patching}), and "
                f"the page's model has {in_force}: the page says so beside the numbers"
            )
    if page.exists():  # it may have appeared while the model ran: still never overwritten
        raise ConfigError(f"attention={cfg.attention} appeared while predicting: choose a new name")
    write_page(view, page)
    print(f"attention: {page}", file=sys.stderr)


def check_settings(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError(
            "ckpt is required: give a run directory (its best checkpoint), a .ckpt file or hf:<model>, e.g. "
            f"""{module_command("src.predict", "ckpt=outputs/<date>/<time>", 'text="..."')}"""
        )
    if cfg.text is not None and cfg.input is not None:
        raise ConfigError(
            "text= and input= are both given: give exactly one, text=... for one text or input=<file> for a file of "
            "lines"
        )
    if cfg.text is None and cfg.input is None:
        raise ConfigError(
            "text is required (or input=<file> for many lines): give one, e.g. "
            f"""{module_command("src.predict", "ckpt=...", 'text="..."')}"""
        )
    check_finite_settings(cfg)
    validate_decode(cfg.decode)
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples={cfg.num_samples} must be >= 1")
    if cfg.num_samples > 1 and cfg.input is not None:
        raise ConfigError("num_samples > 1 needs text=...: with input=<file> each line gets one output; leave it out")
    if cfg.num_samples > 1 and cfg.decode.strategy != "sample":  # greedy and beam would give one output, not N
        raise ConfigError(
            f"num_samples={cfg.num_samples} draws several continuations only with decode.strategy=sample "
            f"(decode.strategy={cfg.decode.strategy} gives one): add decode.strategy=sample, or leave num_samples out"
        )
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size} must be >= 1 (lines decoded together)")
    check_seed(cfg.seed)
    check_threads(cfg.torch_threads)


def check_decoding(cfg: DictConfig, kind: str) -> None:
    """The decode.* settings (and num_samples) against what the model does with them. A classifier does not decode:
    a strategy or several samples are refused (they cannot happen), any other decode.* setting is named in one
    warning. A decoder: one warning for the settings its strategy does not read."""
    if task_kind(kind).predicts_tokens:
        warn_unused_decode_settings(cfg.decode)
        return
    asked = [f"decode.strategy={cfg.decode.strategy}"] if cfg.decode.strategy != "greedy" else []
    asked += [f"num_samples={cfg.num_samples}"] if cfg.num_samples > 1 else []
    no_decoding = "a classifier does not decode, it gives one label and the class probabilities"
    if asked:
        raise ConfigError(f"{', '.join(asked)}: {no_decoding}: leave {'them' if len(asked) > 1 else 'it'} out")
    unused = given_decode_settings(
        cfg.decode, [name for name in DecodeConfig.__dataclass_fields__ if name != "strategy"]
    )
    if unused:
        are = "are" if len(unused) > 1 else "is"
        print_warning(
            f"{', '.join(unused)} {are} not used: {no_decoding}: leave {'them' if len(unused) > 1 else 'it'} out"
        )


def warn_if_labelled(label_names: list[str], texts: list[str], where: list[str], input_file: str | None) -> None:
    """Classification: one warning when lines end in a TAB and one of the model's labels, as the lines of the task's
    TSV files do. predict reads each whole line as the sentence (the label would be read as one of its words)."""
    labels = set(label_names)
    labelled = [i for i, text in enumerate(texts) if "\t" in text and text.rsplit("\t", 1)[1].strip() in labels]
    if not labelled:
        return
    if where == ["text"]:
        label = texts[0].rsplit("\t", 1)[1].strip()
        print_warning(
            f"text ends in a TAB and one of the model's labels ({label!r}): predict reads the whole text as one "
            "sentence, label included: give the sentence only"
        )
        return
    first = labelled[0]
    print_warning(
        f"{len(labelled)} of {len(texts)} lines end in a TAB and one of the model's labels (the first: line "
        f"{first + 1}, {texts[first]!r}): predict reads each whole line as one sentence, label included: give the "
        f"sentences only (e.g. cut -f1 {shlex.quote(str(input_file))})"
    )


def decode_settings(cfg: DictConfig) -> dict:
    d = cfg.decode
    return dict(
        max_new_tokens=d.max_new_tokens,
        strategy=d.strategy,
        beam_size=d.beam_size,
        length_penalty=d.length_penalty,
        temperature=d.temperature,
        top_k=d.top_k,
        top_p=d.top_p,
        no_repeat_ngram_size=d.no_repeat_ngram_size,
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def classify(model, datamodule, inputs: list[list[int]], where: list[str], batch_size: int) -> list[list[str]]:
    """Per input: the label, then every class with its probability, most probable first; an empty line: nothing."""
    wanted = with_content(inputs, where, "a sentence to classify")
    names = datamodule.label_names
    results: list[list[str]] = [[""] for _ in inputs]
    for i, probs in zip(wanted, classify_in_batches(model, [inputs[i] for i in wanted], batch_size)):
        ranked = probs.argsort(descending=True, stable=True).tolist()  # ties: the first class, as argmax picks
        results[i] = [names[ranked[0]]] + [f"  {names[c]}: {probs[c].item():.3f}" for c in ranked]
    return results


def translate(
    model, datamodule, inputs: list[list[int]], where: list[str], settings: dict, batch_size: int
) -> list[str]:
    """seq2seq: every input decoded, `batch_size` at a time; empty lines give empty outputs."""
    wanted = with_content(inputs, where, "something to translate")
    outputs = translate_in_batches(model, [inputs[i] for i in wanted], batch_size=batch_size, **settings)
    lines = [""] * len(inputs)
    for i, out in zip(wanted, outputs):
        lines[i] = datamodule.decode_tgt(out)
    return lines


def continue_texts(
    model, datamodule, texts: list[str], inputs: list[list[int]], where: list[str], settings: dict, repeats: int
) -> list[str]:
    """lm: each text continued from its ids (the model was trained on raw text windows, which hold no BOS); an
    empty text=... starts from BOS, an empty line of a file stays empty. One text at a time: prompts of different
    lengths cannot share a batch without padding inside the prompt."""
    wanted = set(with_content(inputs, where, "text to continue")) if where != ["text"] else {0}
    longest = max((len(ids) for ids in inputs), default=0) or 1
    room = model.cfg.max_len - longest + 1  # the positions left after the prompt (decoding.generate stops there)
    if room < settings["max_new_tokens"]:
        print_warning(
            f"decode.max_new_tokens={settings['max_new_tokens']}: the model has {model.cfg.max_len} positions and "
            f"the {'longest ' if len(inputs) > 1 else ''}prompt takes {longest}, so at most {max(room, 1)} tokens "
            "are generated"
        )
    lines = []
    for i, (text, ids) in enumerate(zip(texts, inputs)):
        if i not in wanted:
            lines.append("")
            continue
        prompt = ids or [model.cfg.bos_id]
        out = generate(model, prompt=torch.tensor([prompt] * repeats), **settings)
        lines.extend(text + continuation(datamodule, prompt, row.tolist()) for row in out)
    return lines


def continuation(datamodule, prompt: list[int], new: list[int]) -> str:
    """The text the new ids add to the prompt: the text of the whole sequence past the prompt's, as transformers'
    text-generation pipeline cuts it, since a tokenizer may write a piece differently at the start of a text (Llama's
    decoder drops the first "▁": "▁sat" alone is "sat", after "on" it is " sat"). The new ids alone where the prompt
    holds an end of text (decoding stops there: a chat prompt's <|eot_id|>) or the whole does not start with the
    prompt's text."""
    alone = datamodule.decode_tgt(new)
    if not alone or any(i in datamodule.task.specials.ends for i in prompt):
        return alone
    start, whole = datamodule.decode_tgt(prompt), datamodule.decode_tgt([*prompt, *new])
    return whole[len(start) :] if whole.startswith(start) else alone


@contextlib.contextmanager
def quiet_training_splits():
    """While the run's task is rebuilt: src.predict reads its data only for the tokenizer and vocabulary, so what
    the task says of its splits (a translation task's "train: truncated 12 of 29000 pairs") is not about the texts
    predicted, whose own cuts warn_if_cut reports. Errors still pass."""
    tasks = logging.getLogger("src.data.tasks")
    level = tasks.level
    tasks.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tasks.setLevel(level)


def predict(cfg: DictConfig) -> list[str]:
    """The output lines: for text=..., one per sample (classification: the label, then probabilities); for
    input=<file>, one per input line."""
    from src.analysis.ablation import ablate_trained_model, ablated_line
    from src.training.checkpoint import checkpoint_model_config, load_run, read_any_checkpoint

    check_settings(cfg)
    texts, where = read_texts(cfg)
    check_output(cfg)
    page = check_attention_page(cfg)
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    checkpoint = read_any_checkpoint(cfg.ckpt, cfg.get("task"), "ckpt")  # ckpt=hf:<model>: a pretrained one
    check_ablation(cfg.ablate, checkpoint_model_config(checkpoint))  # a bad spec: before the data are loaded
    reading_only = (checkpoint["hyper_parameters"].get("pretrained") or {}).get("reading_only")
    if reading_only and cfg.ablate.method == "mean":
        raise ConfigError(
            "ablate.method=mean needs a task's training examples for the heads' mean outputs: give task=... (or "
            "use ablate.method=zero)"
        )
    with quiet_training_splits():
        module, datamodule = load_run(cfg.ckpt, checkpoint=checkpoint)
    if page is not None and cfg.attention_site is not None:  # before any decoding
        check_attention_site(cfg.attention_site, module.model)
    check_decoding(cfg, datamodule.kind)
    classifies = not task_kind(datamodule.kind).predicts_tokens  # one label per input
    if classifies:
        warn_if_labelled(datamodule.label_names, texts, where, cfg.input)
    inputs = read_inputs(datamodule, texts, where)
    # After every check of the input (mean ablation runs training examples through the model first). On stderr:
    # stdout holds the predictions only.
    ablation = ablate_trained_model(module, datamodule, cfg.ablate)
    if not ablation.empty:
        print(ablated_line(module, ablation), file=sys.stderr)

    with eval_mode(module.model):  # every kind: no dropout, and no gradients (nothing here is trained)
        repeats = cfg.num_samples if cfg.decode.strategy == "sample" else 1
        if classifies:
            results = classify(module.model, datamodule, inputs, where, cfg.batch_size)
            lines = results[0] if cfg.text is not None else [labels[0] for labels in results]
        elif task_kind(datamodule.kind).translates:
            settings = decode_settings(cfg)
            lines = translate(module.model, datamodule, inputs * repeats, where * repeats, settings, cfg.batch_size)
        else:
            settings = decode_settings(cfg)
            lines = continue_texts(module.model, datamodule, texts, inputs, where, settings, repeats)
    if repeats > 1:  # num_samples=N of one text (a file gets one output per line): each sample under its header
        lines = [f"--- sample {i + 1} ---\n{line}" for i, line in enumerate(lines)]
    if page is not None:
        write_attention_page(cfg, page, module, datamodule, checkpoint, ablation)
    return lines


def write_atomically(path: Path, lines: list[str]) -> None:
    """The whole file or nothing: written beside its destination, then renamed onto it (the partial file is removed
    when the writing stops half-way, Ctrl-C included)."""
    partial = path.with_name(path.name + ".part")
    try:
        partial.write_text("".join(line.replace("\n", " ") + "\n" for line in lines), encoding="utf-8")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# What this command has made so far, for the one line Ctrl-C gets (interrupted_line): set by main.
_PROGRESS: dict = {}


def new_file(setting: str | None) -> Path | None:
    """The file a setting names (output=, attention=), when it does not exist yet: the command never writes over one,
    so if it exists when Ctrl-C comes, this command wrote it."""
    if setting is None or not str(setting).strip():
        return None
    path = Path(setting).expanduser()
    return None if path.exists() else path


def interrupted_line(typed: list[str] | None = None) -> str:
    """What Ctrl-C says after `interrupted by SIGINT`: what was written (the output file and the attention page
    appear whole or not at all), what was not, and how to run it again."""
    if _PROGRESS.get("done"):  # only the exit was left
        return f" as the command ended: {_PROGRESS['done']}"
    files = [path for path in (_PROGRESS.get("output"), _PROGRESS.get("page")) if path is not None]
    written = [str(path) for path in files if path.exists()]
    missing = [str(path) for path in files if not path.exists()]
    said = []
    if missing:
        said.append(f"{' and '.join(missing)} {'were' if len(missing) > 1 else 'was'} not written")
    if written:
        said.append(f"{' and '.join(written)} {'were' if len(written) > 1 else 'was'} written")
    if not files:
        said.append("nothing was printed or written")
    again = f"delete {' and '.join(written)} and run" if written else "run"
    return f": {', '.join(said)}; {again} the same command again: {command_line('src.predict', typed)}"


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    started = time.perf_counter()
    _PROGRESS.clear()
    _PROGRESS.update(output=new_file(cfg.output), page=new_file(cfg.attention))
    with user_errors_as_one_line():
        lines = predict(cfg)
        output = check_output(cfg)  # again: the file may have appeared while decoding
    if output is not None:
        write_atomically(output, lines)
        _PROGRESS["done"] = f"{output} was written whole ({len(lines)} lines)"
        seconds = time.perf_counter() - started
        print(f"{len(lines)} lines written to {output} in {seconds:.1f} s", file=sys.stderr)
    else:
        print("\n".join(lines))
        sys.stdout.flush()  # all of them out before the line would say they are
        _PROGRESS["done"] = "the predictions were printed whole"
    said_until_the_process_ends(interrupted_line())


def cli() -> None:
    """The console script's entry point (pyproject.toml) and `python -m src.predict`'s. Ctrl-C is one line and exit
    status 130 (src/cli/interrupts.py): what was written and what was not, and how to run it again."""
    _PROGRESS.clear()  # Ctrl-C before main has read the settings: nothing was written
    typed = sys.argv[1:]  # as typed: run_hydra_command rewrites free text for Hydra (src/cli/free_text.py)
    with ctrl_c_as_one_line(lambda: interrupted_line(typed)):
        run_hydra_command(main)


if __name__ == "__main__":
    cli()
