"""Our activation patching (src/analysis/patching.py) computes what TransformerLens's does: the same random-weight
GPT-2 (built by transformers, saved as save_pretrained saves it), loaded by our converter on one side and by
TransformerLens's own GPT-2 conversion into its HookedTransformer on the other, the same prompt pair and metric, and
the two tables TransformerLens's `get_act_patch_resid_pre` and `get_act_patch_attn_head_out_by_pos` make: equal to
1e-5 in float32.

TransformerLens is not a dependency of the project: src/bench/patching.py installs it into a throw-away
environment under the repository's .cache/ (once; 10-20 s, the wheels it needs beyond the project's, from the
package index) and runs its side there in a subprocess. The test is skipped only when that environment cannot be
built because the package index is out of reach; any other failure to build it fails the test.

A GPT-2 smaller than GPT-2 small (4 layers, d_model 128, 4 heads, a vocabulary of 1,000) keeps TransformerLens's
sweep, one forward pass per patch, to a second; `python -m src.bench.patching` compares the real shape.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers", reason="the optional group: pip install -e '.[pretrained]'")

from src.bench import patching  # noqa: E402

pytestmark = pytest.mark.slow

# larger initial weights than transformers' 0.02: patches move the metric by more, so a wrong place would show
SHAPE = dict(n_layer=4, n_embd=128, n_head=4, vocab_size=1000, n_positions=64, initializer_range=0.1)
TOLERANCE = 1e-5  # absolute, on the metric (a logit difference)


@pytest.fixture(scope="module")
def transformer_lens_python():
    try:
        return patching.transformer_lens_python()
    except patching.TransformerLensUnavailable as error:
        if error.offline:
            pytest.skip(f"TransformerLens cannot be installed: the package index is out of reach ({error})")
        raise


def test_residual_stream_and_per_head_patching_equal_transformer_lens(transformer_lens_python, tmp_path):
    model_dir = patching.save_model(patching.random_gpt2(**SHAPE), tmp_path / "gpt2")
    pair = patching.ioi_like_pair(SHAPE["vocab_size"], length=10, batch=2)
    ours = patching.our_sweep(model_dir, pair, torch.float32, patches_per_pass=32)
    theirs = patching.their_sweep(transformer_lens_python, model_dir, pair, torch.float32, threads=1)

    assert theirs["versions"]["transformer_lens"] == patching.TL_VERSION
    layers, heads = SHAPE["n_layer"], SHAPE["n_head"]
    shapes = {"resid_pre": (layers, 10), "head_out_by_pos": (layers, 10, heads)}
    assert theirs["patches_run"] == theirs["patches"] == 4 * 10 + 4 * 10 * 4
    tables = {name: theirs[name].view(shape) for name, shape in shapes.items()}
    for name, shape in shapes.items():
        assert ours[name].shape == shape
    differences = patching.differences(ours, theirs)
    assert max(differences.values()) <= TOLERANCE, differences

    # the comparison has something to compare: the corruption moves the metric, and the patches tell places apart
    assert abs(theirs["clean"] - theirs["corrupted"]) > 1000 * TOLERANCE
    for name, table in tables.items():
        spread = (table.max() - table.min()).item()
        assert spread > 100 * TOLERANCE, (name, spread)
    # before the first changed token the two runs agree (causal attention): a patch there changes nothing
    assert (tables["resid_pre"][:, :2] - theirs["corrupted"]).abs().max() <= TOLERANCE
