"""The README's worked examples of adding an ablation, performed for real: a new mask scheme with a setting and
a new positional scheme, each registered the way the README says, then composed from the command-line config,
validated, built and put through the same checks every built-in scheme gets.

(Registered here only for the test; the README shows the same code as it would sit in src/model/.)
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from src.cli.schema import model_config_for, register_configs
from src.cli.validation import validate_config
from src.model import build_model
from src.model.masks import MASK_SCHEMES, MaskScheme, causal_mask
from src.model.positional import POSITIONAL_SCHEMES, SinusoidalPositions

# --- the README's new mask scheme: one class, one registry entry, one yaml file -------------------------------


@dataclass
class DilatedMask(MaskScheme):
    """dilated: a query sees every `dilation`-th position counted from itself (causally in the decoder)."""

    dilation: int = 2

    def _every_nth(self, tq: int, tk: int, q_offset: int, device) -> Tensor:
        distance = torch.arange(tq, device=device)[:, None] + q_offset - torch.arange(tk, device=device)[None, :]
        return distance % self.dilation == 0  # (Tq, Tk)

    def encoder_structure(self, s: int, device=None) -> Tensor:
        return self._every_nth(s, s, 0, device)

    def decoder_structure(self, tq: int, tk: int, q_offset: int = 0, device=None) -> Tensor:
        return causal_mask(tq, tk, q_offset, device) & self._every_nth(tq, tk, q_offset, device)


DILATED_YAML = """\
# Dilated attention: a query sees every `dilation`-th position from itself.
defaults:
  - /schema/mask/dilated@_here_
  - _self_

type: dilated
dilation: 2
"""


# --- the README's new positional scheme: one class, one registry entry ----------------------------------------


class ScaledSinusoidalPositions(SinusoidalPositions):
    """The paper's sinusoids times one learned scale (Hua et al. 2022), initialised at d_model^-0.5."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__(d_model, max_len)
        self.scale = nn.Parameter(torch.tensor(d_model**-0.5))

    def add_to_embeddings(self, x: Tensor, start: int = 0) -> Tensor:
        return x + self.scale * self.table[start : start + x.size(1)].to(x.dtype)


@pytest.fixture
def registered(monkeypatch, tmp_path):
    """The registry entries and the yaml file, as the README's steps add them (undone after the test)."""
    monkeypatch.setitem(MASK_SCHEMES, "dilated", DilatedMask)
    monkeypatch.setitem(POSITIONAL_SCHEMES, "scaled_sinusoidal", ScaledSinusoidalPositions)
    (tmp_path / "mask").mkdir()
    (tmp_path / "mask" / "dilated.yaml").write_text(DILATED_YAML)
    register_configs()  # what importing src.run does: the schema of every registered scheme
    return [f"hydra.searchpath=[file://{tmp_path}]"]  # where conf/mask/dilated.yaml would be


def test_a_new_mask_scheme_works_from_the_command_line(compose, registered):
    cfg = compose(*registered, "mask=dilated", "mask.dilation=3")
    validate_config(cfg)
    assert model_config_for(cfg).mask == {"type": "dilated", "dilation": 3}
    model = build_model(model_config_for(cfg, src_vocab_size=12, tgt_vocab_size=12))
    allowed = model.attention_masks(src=torch.full((1, 7), 5), tgt=torch.full((1, 7), 5))
    assert allowed["encoder_self"][0, 0, 6].tolist() == [True, False, False, True, False, False, True]
    assert allowed["decoder_self"][0, 0, 6].tolist() == [True, False, False, True, False, False, True]
    assert allowed["decoder_self"][0, 0, 0].tolist() == [True] + [False] * 6  # causal: no future


def test_a_new_mask_passes_the_checks_every_mask_gets(registered):
    from tests.model import test_decoding, test_transformer

    for pos in POSITIONAL_SCHEMES:
        test_transformer.test_explicit_and_fused_paths_agree("dilated", pos)
    test_transformer.test_padding_does_not_change_outputs_at_real_positions("dilated", "rope")
    for arch in ("encoder_decoder", "decoder_only"):
        test_decoding.test_cached_logits_equal_full_recomputation_at_every_step(arch, "rope", "dilated")


def test_a_new_positional_scheme_works_from_the_command_line(compose, registered):
    cfg = compose(*registered, "model.pos_encoding=scaled_sinusoidal")
    validate_config(cfg)
    model = build_model(model_config_for(cfg, src_vocab_size=12, tgt_vocab_size=12))
    assert isinstance(model.positional, ScaledSinusoidalPositions)
    src, tgt = torch.randint(4, 12, (2, 6)), torch.randint(4, 12, (2, 5))
    model(src, tgt).logits.sum().backward()
    assert model.positional.scale.grad is not None  # the scale is trained
    unknown = compose(*registered, "model.pos_encoding=scaled_sinusiodal")
    with pytest.raises(Exception, match="model.pos_encoding='scaled_sinusiodal' is not known"):
        validate_config(unknown)


@pytest.mark.filterwarnings("ignore:mask=none")
def test_a_new_positional_scheme_passes_the_checks_every_scheme_gets(registered):
    from tests.model import test_transformer

    for mask in MASK_SCHEMES:
        test_transformer.test_explicit_and_fused_paths_agree(mask, "scaled_sinusoidal")
    test_transformer.test_causal_decoder_outputs_do_not_see_future_tokens("scaled_sinusoidal")
