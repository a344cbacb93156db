"""Read-only views of a network for evaluation, predict and the dashboard: attention maps, greedy decoding, batched
translation and classification of many sources, sampled text and predicted labels; and `forward_batch`, the
teacher-forced forward pass they share with the training step.

They are plain functions of the network (a src.model model: the LightningModule's `.model`), a batch in the
format of its task kind (see module.py) and, where text is involved, the datamodule. Every view runs the network
under `eval_mode` (no dropout, no gradients) and leaves it in the mode it found it, so a dashboard callback may
call one between two training steps. Batches may sit on the CPU: the views move them to the network's device.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from src.data.registry import task_kind
from src.model import ModelOutput, generate
from src.model.names import STACKS, site_named

IGNORE_INDEX = -100  # a target position that is not scored (PyTorch's cross_entropy default)


def site_inputs(site: str) -> tuple[str, str]:
    """The batch entries that hold an attention site's query tokens and its key tokens (names.SITES, and each
    stack's entry in names.STACKS): its own stack's ask, and those of the stack its keys come from answer
    (cross-attention: the target's positions ask, the source's answer)."""
    found = site_named(site)
    if found.key_stack is None:
        raise ValueError(f"{site} is a feed-forward site: it has no keys, only its stack's positions")
    return STACKS[found.stack].batch_key, STACKS[found.key_stack].batch_key


def scored_target(model: nn.Module, kind: str, batch: Mapping[str, Tensor]) -> Tensor:
    """What the logits are scored against, IGNORE_INDEX where nothing is: the padding (batch["tgt_real"], from the
    examples' lengths, so a real token that shares the pad id, GPT-2's <|endoftext|>, is scored) and, under the
    prefix-LM mask, the positions that see their own target. Classification: the labels."""
    if not task_kind(kind).predicts_tokens:
        return batch["label"]
    target = batch["tgt_out"]
    real = batch.get("tgt_real")
    if real is None:  # a batch made without lengths: our vocabularies' pad only pads
        real = target != model.cfg.pad_id
    if not task_kind(kind).reads_source:  # a decoder-only model: its mask may be a prefix-LM's
        trainable = model.trainable_positions(batch["tgt_in"])
        if trainable is not None:
            real = real & trainable
    return target.masked_fill(~real, IGNORE_INDEX)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with `model` in eval mode and without gradients, then put back the mode it was in (training,
    when a callback looks at the model mid-run), even when the block raises."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _on_model_device(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    device = next(model.parameters()).device
    return {key: value.to(device) if isinstance(value, Tensor) else value for key, value in batch.items()}


def forward_batch(model: nn.Module, kind: str, batch: Mapping[str, Any], need_weights: bool = False) -> ModelOutput:
    """The network on a batch of its task kind, teacher-forced. It switches no mode: the training step calls it
    as it is, the views below inside `eval_mode`. batch["padded"], when the batch has it (a bool the module read on
    the host: TransformerLitModule.on_before_batch_transfer), says whether any token is padding, so that the
    attention may use the fused kernels that take no mask (src/model/masks.py) without asking the device."""
    told = {"padded": batch["padded"]} if "padded" in batch else {}  # else the model decides (on a CPU: asks)
    found = task_kind(kind)
    if found.translates:  # an encoder-decoder: the source, and the target's input teacher-forced
        return model(batch["src"], batch["tgt_in"], need_weights=need_weights, **told)  # logits (B, T, V)
    if found.predicts_tokens:  # a decoder-only model: its text
        return model(batch["tgt_in"], need_weights=need_weights, **told)  # logits (B, T, V)
    return model(batch["src"], need_weights=need_weights, **told)  # an encoder-only classifier: logits (B, C)


def attention_maps(model: nn.Module, kind: str, batch: Mapping[str, Tensor]) -> ModelOutput:
    """The output with `.attentions` (site -> one (B, H, Tq, Tk) tensor per layer) for this batch. Only the
    dashboard's logging steps ask for the weights: training steps keep the fast attention path."""
    with eval_mode(model):
        return forward_batch(model, kind, _on_model_device(model, batch), need_weights=True)


def greedy_decode(model: nn.Module, kind: str, batch: Mapping[str, Tensor], extra_tokens: int = 0) -> Tensor:
    """Greedy output (B, L) (no BOS; EOS then PAD).

    seq2seq: from batch["src"], at most as long as the reference (batch["tgt_out"], else the source) plus
    `extra_tokens`; lm: continues the first half of batch["tgt_in"] (at least the prompt the model needs) up to
    its full length.
    """
    if not task_kind(kind).predicts_tokens:
        raise ValueError("greedy_decode is for sequence tasks; use predict_labels for classification")
    batch = _on_model_device(model, batch)
    with eval_mode(model):
        if task_kind(kind).translates:  # an encoder-decoder: decode from the source
            target_len = batch["tgt_out"].size(1) if "tgt_out" in batch else batch["src"].size(1)
            return generate(model, src=batch["src"], max_new_tokens=target_len + extra_tokens)
        tokens = batch["tgt_in"]  # (B, T)
        half = max(1, tokens.size(1) // 2, model.mask_scheme.min_prompt_len)
        return generate(model, prompt=tokens[:, :half], max_new_tokens=tokens.size(1) - half)


def _longest_first(
    sources: Sequence[Sequence[int]], batch_size: int, pad_id: int
) -> Iterator[tuple[list[int], Tensor]]:
    """`sources` (token ids, no padding) in batches of `batch_size`, longest first: (the sources' indices, their ids
    padded with `pad_id` into one (B, S) tensor). Sorting puts sentences of similar length together, so little of
    the work is spent on padding; padding changes no output (the masks hide it), only the time."""
    order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = torch.full((len(chunk), len(sources[chunk[0]])), pad_id, dtype=torch.long)  # (B, S), longest first
        for row, i in enumerate(chunk):
            src[row, : len(sources[i])] = torch.as_tensor(sources[i], dtype=torch.long)
        yield chunk, src


def translate_in_batches(
    model: nn.Module, sources: Sequence[Sequence[int]], batch_size: int = 64, **decode
) -> list[Tensor]:
    """Decode every source (token ids, no padding) with `generate(**decode)`, `batch_size` at a time, longest first;
    the outputs (each (L,): no BOS, EOS then PAD) come back in the order of `sources`."""
    device = next(model.parameters()).device
    outputs: list[Tensor] = [torch.empty(0, dtype=torch.long)] * len(sources)
    with eval_mode(model):
        for chunk, src in _longest_first(sources, batch_size, model.cfg.pad_id):
            generated = generate(model, src=src.to(device), **decode).cpu()  # (B, L)
            for row, i in enumerate(chunk):
                outputs[i] = generated[row]
    return outputs


def classify_in_batches(model: nn.Module, sources: Sequence[Sequence[int]], batch_size: int = 64) -> list[Tensor]:
    """Classification: every source's class probabilities (each (C,)), `batch_size` sources at a time, longest
    first, in the order of `sources`."""
    device = next(model.parameters()).device
    probabilities: list[Tensor] = [torch.empty(0)] * len(sources)
    with eval_mode(model):
        for chunk, src in _longest_first(sources, batch_size, model.cfg.pad_id):
            probs = model(src.to(device)).logits.float().softmax(dim=-1).cpu()  # (B, C)
            for row, i in enumerate(chunk):
                probabilities[i] = probs[row]
    return probabilities


def predict_labels(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """Classification: the predicted class ids (B,)."""
    with eval_mode(model):
        return model(_on_model_device(model, batch)["src"]).logits.argmax(dim=-1)


def sample_text(
    model: nn.Module,
    datamodule,
    decode: Mapping[str, float],
    max_new_tokens: int = 200,
    prompt: str = "",
    seed: int = 0,
) -> str:
    """lm tasks: what the model read and a sampled continuation, drawn with the run's `decode` settings (temperature,
    top_k, top_p) from a fixed seed, so that samples are comparable across steps and runs. A prompt is read as
    src.predict and the attention page read it (datamodule.encode_input: as the text windows of training were, no BOS
    of ours, and a pretrained tokenizer's own mark in front, Llama's <s>); without one, sampling starts at BOS. That
    mark is written as the attention page labels it (`marks_read`), so the sample shows what the model read.
    A prefix-LM starts from a whole validation prefix when no prompt is given; a prompt shorter than its prefix is
    refused (ConfigError), as src.predict refuses it, rather than swapped for another text."""
    ids = (datamodule.encode_input(prompt)[0] if prompt else []) or [model.cfg.bos_id]
    needed = model.mask_scheme.min_prompt_len
    if not prompt and len(ids) < needed:  # a prefix-LM starts from a whole prefix: take a validation one
        ids = datamodule.probe_batch(1)["tgt_in"][0, :needed].tolist()
        prompt = datamodule.decode_tgt(ids)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    with eval_mode(model):
        out = generate(
            model,
            prompt=torch.tensor([ids], device=device),
            max_new_tokens=max_new_tokens,
            strategy="sample",
            temperature=decode.get("temperature", 1.0),
            top_k=decode.get("top_k", 0),
            top_p=decode.get("top_p", 1.0),
            generator=generator,
        )
    return marks_read(datamodule, ids) + prompt + datamodule.decode_tgt(out[0])


def marks_read(datamodule, ids: Sequence[int]) -> str:
    """The marks a pretrained tokenizer puts in front of a model input (Llama's and Mistral's <s>) where `ids` begin
    with them, as the attention page labels them: decoding leaves them out of a text, though the model read them.
    "" for our vocabularies, which put none."""
    marked = datamodule.vocab(datamodule.input_side).wrap_source([-1])  # an input of one id, between its marks
    front = marked[: marked.index(-1)]
    return "".join(datamodule.tgt_token_strings(front)) if front and list(ids[: len(front)]) == front else ""
