"""family=keras: the tutorial's Keras ResNet-50 layer for layer, its errors, training, analyses.

The tutorial's code (Analytics Vidhya 2021, quoted in models/keras.py) is the specification:
parameter counts are computed from its layer shapes, and `tutorial_forward` transcribes its
forward pass with torch's functional ops, so the model is checked against the code itself.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, summaries
from torch import nn

from degradation.analyze.lesion import DeletedBlock, lesion_study, why_not_deletable
from degradation.errors import UserError
from degradation.models import build_model, conv3x3_bn_layers, count_parameters, layer_response_std
from degradation.models.keras import KerasProjection, SamePadMaxPool2d
from degradation.models.measure import GradLayout, conv3x3_layers, gradient_norms, main_path_convs
from degradation.models.skips import NoSkip

STAGES = ((3, (64, 256)), (4, (128, 512)), (6, (256, 1024)), (3, (512, 2048)))  # tutorial's
STEPS = 2


def keras(skip: str = "add", **kwargs) -> nn.Module:
    return build_model(50, skip, "all_projection", family="keras", **kwargs)


@pytest.fixture(scope="module")
def residual() -> nn.Module:
    """One seeded resnet-50 keras in eval mode, read only (building one takes a second)."""
    torch.manual_seed(0)
    return keras().eval()


# --- parameter counts: Keras's model.summary() from the layer shapes -------------------------


def conv2d(k: int, c_in: int, c_out: int) -> tuple[int, int]:
    """Conv2D (use_bias=True): (trainable, non-trainable) = (k·k·in·out + out bias, 0)."""
    return k * k * c_in * c_out + c_out, 0


def batch_norm(c: int) -> tuple[int, int]:
    """BatchNormalization: gamma, beta trainable; moving mean and variance not (4 per channel)."""
    return 2 * c, 2 * c


def keras_counts(skip: str, in_channels: int = 3, classes: int = 10) -> tuple[int, int]:
    """(trainable, total) of the tutorial's model, layer by layer as Keras counts them."""
    layers = [conv2d(7, in_channels, 64)]  # the stem; MaxPool2D has no weights
    c_in = 64
    for blocks, (f0, f1) in STAGES:
        for _ in range(blocks):
            layers += [conv2d(1, c_in, f0), batch_norm(f0), conv2d(3, f0, f0), batch_norm(f0)]
            layers += [conv2d(1, f0, f1), batch_norm(f1)]
            if skip == "add":  # z2: the projection of every block
                layers += [conv2d(1, c_in, f1), batch_norm(f1)]
            c_in = f1
    layers.append((c_in * classes + classes, 0))  # Dense(10): kernel + bias
    trainable = sum(t for t, _ in layers)
    return trainable, trainable + sum(n for _, n in layers)


@pytest.mark.parametrize("skip", ["add", "none"])
def test_parameter_counts_equal_keras_trainable_and_total(skip):
    trainable, total = keras_counts(skip)  # add: 38,137,738 / 38,213,258; none: 20,774,538 / ...
    with torch.device("meta"):
        model = keras(skip, num_classes=10, in_channels=3)
    moving = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("_mean", "_var")))
    assert count_parameters(model) == trainable
    assert count_parameters(model) + moving == total


# --- layers and shapes ---------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "size", "pooled"), [(3, 32, 7), (1, 28, 6)])
def test_output_shapes_follow_keras(channels, size, pooled):
    """valid 7x7/2 conv: (n - 7) // 2 + 1 (32 -> 13, 28 -> 11); same 3/2 pool: ceil(n / 2)."""
    with torch.device("meta"):
        model = keras(in_channels=channels)
        x = torch.empty(2, channels, size, size)
        conv = model.stem.conv(x)
        assert conv.shape == (2, 64, (size - 7) // 2 + 1, (size - 7) // 2 + 1)
        x = model.stem(x)
        assert x.shape == (2, 64, pooled, pooled)
        for stage, (_, (_, f1)) in zip(model.stages, STAGES, strict=True):
            x = stage(x)
            assert x.shape == (2, f1, pooled, pooled)  # no striding inside the stages
        assert model(torch.empty(2, channels, size, size)).shape == (2, 10)


def test_same_max_pool_pads_like_tensorflow():
    # n=4, k=3, s=2: 2 outputs, total padding (2-1)*2 + 3 - 4 = 1, put after (TF's rule), so
    # the windows are rows/cols 0-2 and 2-3(+pad): maxima of r*4 + c are 10, 11, 14, 15.
    x = torch.arange(16.0).view(1, 1, 4, 4)
    pool = SamePadMaxPool2d(3, 2)
    assert pool(x).tolist() == [[[[10.0, 11.0], [14.0, 15.0]]]]
    assert nn.MaxPool2d(3, 2, padding=1)(x).tolist() != pool(x).tolist()  # torch pads before
    assert pool(-x - 1).max() < 0  # padded cells never win
    odd = torch.randn(2, 3, 13, 13)  # the 32x32 stem's output: padding 1 on each side
    assert torch.equal(pool(odd), nn.MaxPool2d(3, 2, padding=1)(odd))
    assert pool(torch.randn(1, 1, 12, 12)).shape == (1, 1, 6, 6)


def test_stem_has_no_bn_or_relu_and_every_layer_has_keras_settings(residual):
    model = residual
    assert [type(m) for m in model.stem] == [nn.Conv2d, SamePadMaxPool2d]
    assert model.stem.conv.padding == (0, 0) and model.stem.conv.stride == (2, 2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 16 * 4 and all(c.bias is not None for c in convs)
    assert model.head.fc.bias is not None
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in norms} == {(1e-3, 0.01)}
    blocks = [b for stage in model.stages for b in stage]
    assert all(isinstance(b.merge.shortcut, KerasProjection) for b in blocks)
    assert all(isinstance(b.merge, NoSkip) for stage in keras("none").stages for b in stage)


def tutorial_forward(model: nn.Module, x: torch.Tensor, skip: str) -> torch.Tensor:
    """The tutorial's Keras code, op by op, on the model's weights (eval mode BN)."""

    def conv_bn(z, conv, bn, pad=0):
        z = F.conv2d(z, conv.weight, conv.bias, padding=pad)
        return F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=1e-3)

    z = F.conv2d(x, model.stem.conv.weight, model.stem.conv.bias, stride=2)  # "valid"
    # MaxPool2D(3, 2, "same") on 6x6: TF pads 1 in total, after; -inf never wins
    z = F.max_pool2d(F.pad(z, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    for stage in model.stages:
        for block in stage:
            b = block.branch
            z1 = F.relu(conv_bn(z, b.conv1, b.bn1))
            z1 = F.relu(conv_bn(z1, b.conv2, b.bn2, pad=1))
            z1 = F.relu(conv_bn(z1, b.conv3, b.bn3))  # a ReLU before the addition
            if skip == "add":
                z2 = conv_bn(z, block.merge.shortcut.conv, block.merge.shortcut.bn)
                z = F.relu(z1 + z2)
            else:
                z = F.relu(z1)  # the plain twin: no z2, no addition
    return F.linear(z.mean(dim=(2, 3)), model.head.fc.weight, model.head.fc.bias)


@pytest.mark.parametrize("skip", ["add", "none"])
def test_forward_is_the_tutorials_code(skip):
    torch.manual_seed(0)
    model = keras(skip).eval()
    for m in model.modules():  # non-trivial statistics, so BN's settings matter
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 18, 18)  # stem -> 6x6, an even size: TF's asymmetric padding
    with torch.no_grad():
        torch.testing.assert_close(model(x), tutorial_forward(model, x, skip))


def test_keras_initialisation_is_glorot_uniform_with_zero_biases(residual):
    conv = residual.stages[3][2].branch.conv2  # 3x3, 512 -> 512
    fan = 9 * 512
    limit = (6 / (fan + fan)) ** 0.5  # glorot_uniform: U(-limit, limit)
    assert conv.weight.abs().max() <= limit
    assert conv.weight.std().item() == pytest.approx(limit / 3**0.5, rel=0.01)
    assert not conv.bias.any()


# --- one-line errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"depth": 56}, "depth=56 is not valid for a keras net; choose depth=50"),
        ({"block": "basic"}, "block='basic' is not valid for a keras net; choose block='bott"),
        ({"skip": "concat"}, "skip='concat' is not valid for a keras net; choose one of: none, ad"),
        ({"shortcut": "zero_pad"}, "shortcut='zero_pad' is not valid for a keras net"),
        ({"shortcut": "projection"}, "choose shortcut='all_projection'"),
        ({"width": 2}, "width=2 is not valid for a keras net; choose width=1"),
        ({"preact": True}, "preact=True is not valid for a keras net; choose preact=False"),
        ({"zero_init_residual": True}, "zero_init_residual=True is not valid for a keras net"),
    ],
)
def test_settings_the_tutorial_lacks_are_one_line_errors(kwargs, expected):
    kwargs = {"depth": 50, "skip": "add", "shortcut": "all_projection", **kwargs}
    with pytest.raises(UserError) as info, torch.device("meta"):
        build_model(family="keras", **kwargs)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_plain_twin_ignores_the_shortcut_and_records_the_net():
    with torch.device("meta"):
        plain = build_model(50, "none", "zero_pad", family="keras")
        residual = keras()
    assert plain.arch == {**residual.arch, "skip": "none", "shortcut": None}
    assert residual.arch == {
        "family": "keras", "depth": 50, "block": "bottleneck", "skip": "add",
        "shortcut": "all_projection", "width": 1, "preact": False, "zero_init_residual": False,
        "head_init": "pytorch", "num_classes": 10, "in_channels": 3,
    }  # fmt: skip


def test_family_keras_picks_its_own_shortcut_as_the_command_line_does():
    from degradation.resolvers import family_shortcut

    with torch.device("meta"):
        model = build_model(50, family="keras")  # no shortcut given: the family's own
    assert model.arch["shortcut"] == "all_projection" == family_shortcut("keras")
    with pytest.raises(UserError, match="shortcut='zero_pad' is not valid for a keras net"):
        build_model(50, shortcut="zero_pad", family="keras")  # a wrong one is still refused


# --- the analyses on the new net -----------------------------------------------------------


def test_fig7_layers_are_the_bns_after_the_3x3_convs(residual):
    names = [name for name, _ in conv3x3_bn_layers(residual)]
    blocks = [f"stages.{i}.{j}" for i, (n, _) in enumerate(STAGES) for j in range(n)]
    assert names == [f"{b}.branch.bn2" for b in blocks]  # not the shortcut's BN, not the stem
    stds = layer_response_std(residual, torch.randn(4, 3, 16, 16))
    assert len(stds) == 16 and all(s > 0 for s in stds)


def test_gradient_flow_follows_the_3x3_convs_of_the_main_path():
    with torch.device("meta"):
        model = keras()
    main = main_path_convs(model)
    assert main[0] == "stem.conv" and main[-1] == "stages.3.2.branch.conv3"
    assert not any("shortcut" in name for name in main)
    # the 7x7 stem, the 1x1 convs and the projections are left out: one 3x3 conv per block
    blocks = [f"stages.{i}.{j}" for i, (n, _) in enumerate(STAGES) for j in range(n)]
    assert [name for name, _ in conv3x3_layers(model)] == [f"{b}.branch.conv2" for b in blocks]
    columns = GradLayout(model).columns
    assert len(columns) == 2 * 16 + 2 * 4  # rms/ and rel/ per layer, then per stage
    assert columns[0] == "rms/stages.0.0.branch.conv2" and columns[-1] == "rel/stages.3"


def test_lesion_keeps_the_projection_of_a_deleted_residual_block(residual):
    blocks = [block for stage in residual.stages for block in stage]
    assert all(why_not_deletable(block) is None for block in blocks)  # every one has its z2
    block = residual.stages[1][0]
    z = torch.relu(torch.randn(4, 256, 3, 3))
    with torch.no_grad():
        assert torch.equal(DeletedBlock(block)(z), torch.relu(block.merge.shortcut(z)))


def test_lesion_study_of_the_plain_twin_skips_the_blocks_that_widen():
    torch.manual_seed(0)
    plain = keras("none", in_channels=1).eval()
    x, labels = torch.randn(2, 1, 16, 16), torch.tensor([0, 1])
    result = lesion_study(plain, x, labels, progress=False)
    kept = [b["block"] for b in result["blocks"] if not b["deleted"]]
    assert kept == ["stages.0.0", "stages.1.0", "stages.2.0", "stages.3.0"]  # 64->256, ...
    deleted = [b for b in result["blocks"] if b["deleted"]]
    assert len(deleted) == 12 and all(0 <= b["test_error"] <= 1 for b in deleted)


# --- training through the real CLI ---------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """plain-50 keras and resnet-50 keras, STEPS steps on tiny synthetic 32x32 data."""
    root = tmp_path_factory.mktemp("keras")
    result = run_cli(
        "-m", "family=keras", "depth=50", "skip=none,add", "experiment=smoke",
        "data.synthetic.image_size=32", "data.synthetic.train_size=64",
        "data.synthetic.test_size=32", "data.val_size=16", "data.batch_size=8",
        "data.eval_batch_size=32", f"trainer.max_steps={STEPS}", "trainer.val_check_interval=2",
        "log_every=1", "grad_every=1", f"output_root={root / 'outputs'}", cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return summaries(root / "outputs" / "sweeps" / "smoke")


def test_keras_nets_train_through_the_cli(sweep):
    by_name = {s["name"]: (path, s) for path, s in sweep.items()}
    assert set(by_name) == {"plain-50 keras", "resnet-50 keras"}
    for name, (path, summary) in by_name.items():
        skip = "none" if name.startswith("plain") else "add"
        assert summary["status"] == "completed" and summary["steps"] == STEPS
        assert summary["family"] == "keras" and summary["block"] == "bottleneck"
        assert summary["shortcut"] == ("all_projection" if skip == "add" else "not_applicable")
        assert summary["params"] == keras_counts(skip)[0]
        with (path / "grad_norms.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0])[1:] == GradLayout(keras(skip)).columns
        assert [int(r["step"]) for r in rows] == list(range(STEPS))
        responses = json.loads((path / "layer_responses.json").read_text())
        assert len(responses["std"]) == 16


def test_gradient_norms_on_the_keras_net():
    model = keras()
    F.cross_entropy(model(torch.randn(2, 3, 16, 16)), torch.tensor([0, 1])).backward()
    norms = gradient_norms(model)
    last = model.stages[3][2].branch.conv2.weight
    name = "stages.3.2.branch.conv2"
    g, w = last.grad.norm().item(), last.norm().item()
    assert norms[f"rms/{name}"] == pytest.approx(g / last.numel() ** 0.5, rel=1e-5)
    assert norms[f"rel/{name}"] == pytest.approx(g / w, rel=1e-5)
