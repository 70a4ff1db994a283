"""Model zoo: exact parameter counts, shortcut/skip behaviour, validation, and portability."""

from __future__ import annotations

import copy
import enum
import pickle
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from degradation.config import RunConfig, variant_name
from degradation.errors import UserError
from degradation.loggers import run_name
from degradation.models import (
    BLOCKS,
    FAMILIES,
    SHORTCUTS,
    SKIPS,
    AddSkip,
    BasicBlock,
    Bottleneck,
    ConcatSkip,
    NoSkip,
    ProjectionShortcut,
    ZeroPadShortcut,
    build_model,
    conv3x3_bn_layers,
    count_flops,
    count_parameters,
    make_shortcut,
)
from degradation.preflight import spec_of_settings
from degradation.report.runs import Run, group_runs

# Exact counts from the layer shapes (docs/recipe.md); He et al. 2015, Sec. 4.2 rounds them to
# 0.27M / 0.46M / 0.66M / 0.85M / 1.7M / 19.4M. Option A has no weights, so plain == option A.
CIFAR_OPTION_A = {
    20: 269_722,
    32: 464_154,
    44: 658_586,
    56: 853_018,
    110: 1_727_962,
    1202: 19_421_274,
}
OPTION_B_EXTRA = 2_752  # 16->32 and 32->64 projections: (512 + 64) + (2048 + 128)
IMAGENET_OPTION_B = {  # torchvision's counts
    18: 11_689_512,
    34: 21_797_672,
    50: 25_557_032,
    101: 44_549_160,
    152: 60_192_808,
}


def _seeded(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return build_model(**kwargs)


def _stage_output_channels(model: nn.Module, x: torch.Tensor) -> list[int]:
    widths: list[int] = []
    hooks = [
        stage.register_forward_hook(lambda _m, _i, out: widths.append(out.shape[1]))
        for stage in model.stages
    ]
    model(x)
    for hook in hooks:
        hook.remove()
    return widths


# --- exact parameter counts ----------------------------------------------------------------


@pytest.mark.parametrize("depth", sorted(CIFAR_OPTION_A))
def test_cifar_parameter_counts_match_paper(depth):
    expected = CIFAR_OPTION_A[depth]
    assert count_parameters(build_model(depth, "add", "zero_pad")) == expected
    assert count_parameters(build_model(depth, "none")) == expected
    assert count_parameters(build_model(depth, "add", "projection")) == expected + OPTION_B_EXTRA


@pytest.mark.parametrize("depth", sorted(IMAGENET_OPTION_B))
def test_imagenet_parameter_counts_match_torchvision(depth):
    torchvision = pytest.importorskip("torchvision")
    model = build_model(depth, "add", "projection", num_classes=1000, family="imagenet")
    assert count_parameters(model) == IMAGENET_OPTION_B[depth]
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    assert count_parameters(model) == count_parameters(reference)
    assert model.arch["block"] == ("basic" if depth < 50 else "bottleneck")


def test_plain_and_option_a_twins_have_identical_parameters_and_buffers():
    plain, residual = build_model(20, "none"), build_model(20, "add", "zero_pad")
    shapes = lambda m: [(n, tuple(t.shape)) for n, t in m.state_dict().items()]  # noqa: E731
    assert shapes(plain) == shapes(residual)


# --- shortcuts ------------------------------------------------------------------------------


def test_zero_pad_shortcut_puts_input_in_the_middle_channels():
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :8], torch.zeros(2, 8, 4, 4))
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert torch.equal(out[:, 24:], torch.zeros(2, 8, 4, 4))
    assert list(ZeroPadShortcut(16, 32, 2).parameters()) == []


def test_zero_pad_shortcut_odd_padding_puts_the_extra_zero_after():
    x = torch.randn(1, 3, 4, 4)
    out = ZeroPadShortcut(3, 6, stride=1)(x)
    assert torch.equal(out[:, :1], torch.zeros(1, 1, 4, 4))
    assert torch.equal(out[:, 1:4], x)
    assert torch.equal(out[:, 4:], torch.zeros(1, 2, 4, 4))


def test_make_shortcut_modes():
    assert make_shortcut("zero_pad", 16, 16, 1) is None
    assert make_shortcut("projection", 16, 16, 1) is None
    assert isinstance(make_shortcut("all_projection", 16, 16, 1), ProjectionShortcut)
    assert isinstance(make_shortcut("zero_pad", 16, 32, 2), ZeroPadShortcut)
    projection = make_shortcut("projection", 16, 32, 2)
    assert isinstance(projection, ProjectionShortcut)
    assert projection.conv.kernel_size == (1, 1) and projection.conv.stride == (2, 2)
    assert projection.conv.bias is None
    assert projection(torch.randn(1, 16, 8, 8)).shape == (1, 32, 4, 4)


def test_all_projection_puts_a_projection_on_every_block():
    model = build_model(20, "add", "all_projection")
    blocks = [block for stage in model.stages for block in stage]
    assert all(isinstance(b.merge.shortcut, ProjectionShortcut) for b in blocks)


# --- skips ----------------------------------------------------------------------------------


def test_plain_net_has_no_shortcut_module_anywhere():
    model = build_model(20, "none", "projection")
    assert model.arch["shortcut"] is None
    assert not any(isinstance(m, (ZeroPadShortcut, ProjectionShortcut)) for m in model.modules())
    for stage in model.stages:
        for block in stage:
            assert isinstance(block.merge, NoSkip)
            assert list(block.merge.children()) == []
    assert count_parameters(model) == CIFAR_OPTION_A[20]  # projection ignored


def test_zero_init_residual_block_starts_as_its_shortcut():
    torch.manual_seed(0)
    model = build_model(20, "add", "zero_pad", zero_init_residual=True)
    down = model.stages[1][0]  # 16 -> 32, stride 2, zero-pad shortcut: 8 + 16 + 8 channels
    x = torch.randn(4, 16, 16, 16)
    carried = slice(8, 24)
    torch.testing.assert_close(down(x)[:, carried], torch.relu(down.merge.shortcut(x))[:, carried])
    same = model.stages[0][1]  # identity shortcut
    x = torch.rand(4, 16, 16, 16)  # x >= 0, as after a ReLU
    torch.testing.assert_close(same(x), x)

    torch.manual_seed(0)
    projected = build_model(20, "add", "projection", zero_init_residual=True).stages[2][0]
    x = torch.randn(4, 32, 16, 16)
    torch.testing.assert_close(projected(x), torch.relu(projected.merge.shortcut(x)))


def test_zero_init_leaves_option_a_zero_filled_channels_alive():
    # gamma 0 on a channel the zero-pad shortcut fills with zeros makes the block output
    # ReLU(0) there, whose gradient is 0: the channel could never train
    torch.manual_seed(0)
    model = build_model(56, "add", "zero_pad", zero_init_residual=True)
    gamma = model.stages[2][0].branch.bn2.weight  # 32 -> 64: channels 16..47 carried
    assert gamma[16:48].abs().max() == 0
    assert (gamma[:16] == 1).all() and (gamma[48:] == 1).all()
    x = torch.randn(8, 3, 32, 32)
    model.train()
    out = model.stages[2](model.stages[1](model.stages[0](model.stem(x))))
    alive = (out > 0).flatten(2).any(-1).any(0)  # per channel: any positive unit
    assert alive.all(), f"dead channels: {(~alive).nonzero().flatten().tolist()}"
    model(x).sum().backward()
    assert (gamma.grad[:16] != 0).all() and (gamma.grad[48:] != 0).all()


def test_zero_init_residual_does_not_apply_to_a_plain_net():
    torch.manual_seed(0)
    plain = build_model(20, "none", zero_init_residual=True)
    torch.manual_seed(0)
    default = build_model(20, "none")
    assert plain.arch == default.arch and plain.arch["zero_init_residual"] is False
    for a, b in zip(plain.state_dict().values(), default.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_zero_init_preact_block_is_the_identity():
    block = build_model(20, "add", preact=True, zero_init_residual=True).stages[0][1]
    x = torch.randn(2, 16, 8, 8)  # no ReLU after a pre-act merge: any sign passes through
    torch.testing.assert_close(block(x), x)


def test_concat_widths_and_parameter_overhead():
    concat, add = build_model(20, "concat"), build_model(20, "add")
    x = torch.randn(2, 3, 32, 32)
    assert _stage_output_channels(concat, x) == [16, 32, 64]
    overhead = 0
    for stage, width in zip(concat.stages, (16, 32, 64), strict=True):
        for block in stage:
            assert isinstance(block.merge, ConcatSkip)
            per_block = count_parameters(block.merge)
            assert per_block == 2 * width * width + 2 * width
            overhead += per_block
    assert count_parameters(concat) - count_parameters(add) == overhead
    assert concat(x).shape == (2, 10)


def test_add_merge_is_branch_plus_shortcut():
    merge = AddSkip(ZeroPadShortcut(4, 8, 2))
    x, branch = torch.randn(1, 4, 6, 6), torch.randn(1, 8, 3, 3)
    torch.testing.assert_close(merge(x, branch), branch + merge.shortcut(x))
    torch.testing.assert_close(AddSkip(None)(x, x), 2 * x)


# --- blocks and families --------------------------------------------------------------------


@pytest.mark.parametrize("depth", [29, 56])
def test_cifar_bottleneck_depth_9n_plus_2(depth):
    model = build_model(depth, block="bottleneck")
    n = (depth - 2) // 9
    assert [len(stage) for stage in model.stages] == [n, n, n]
    assert all(isinstance(b, Bottleneck) for stage in model.stages for b in stage)
    x = torch.randn(2, 3, 32, 32)
    assert _stage_output_channels(model, x) == [64, 128, 256]
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize("depth", [18, 50])
def test_imagenet_family_forward_on_small_input(depth):
    model = build_model(depth, "add", "projection", num_classes=7, family="imagenet").eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_preact_nets_run_and_end_with_bn_relu(block):
    depth = 20 if block == "basic" else 29
    model = build_model(depth, block=block, preact=True)
    assert isinstance(model.final_norm.bn, nn.BatchNorm2d)
    assert isinstance(model.stages[0][0].act, nn.Identity)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_width_and_input_channels():
    model = build_model(8, width=2, in_channels=1, num_classes=3)
    x = torch.randn(2, 1, 28, 28)
    assert _stage_output_channels(model, x) == [32, 64, 128]
    assert model(x).shape == (2, 3)


def test_post_act_block_adds_before_the_last_relu():
    block = BasicBlock(8, 8)
    names = [name for name, _ in block.branch.named_children()]
    assert names == ["conv1", "bn1", "relu1", "conv2", "bn2"]
    assert isinstance(block.act, nn.ReLU)
    pre = BasicBlock(8, 8, preact=True)
    names = [name for name, _ in pre.branch.named_children()]
    assert names == ["bn1", "relu1", "conv1", "bn2", "relu2", "conv2"]


def test_kaiming_fan_in_init_and_bn_defaults():
    model = _seeded(depth=20)
    conv = model.stages[2][1].branch.conv2  # 64 -> 64, fan_in = 576
    assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_blocks_can_be_removed_by_index_for_a_lesion_study():
    model = build_model(20).eval()
    del model.stages[1][1]
    assert len(model.stages[1]) == 2
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# --- build_model: choices and validation ----------------------------------------------------


def test_choices_and_arch_record():
    assert SKIPS == ("none", "add", "concat")
    assert SHORTCUTS == ("zero_pad", "projection", "all_projection")
    assert BLOCKS == ("basic", "bottleneck")
    assert FAMILIES == ("cifar", "imagenet", "keras")
    assert build_model(20, "add", "projection").arch == {
        "family": "cifar",
        "depth": 20,
        "block": "basic",
        "skip": "add",
        "shortcut": "projection",
        "width": 1,
        "preact": False,
        "zero_init_residual": False,
        "head_init": "pytorch",
        "num_classes": 10,
        "in_channels": 3,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depth": 20, "skip": "none", "num_classes": 7, "in_channels": 1},
        {"depth": 29, "block": "bottleneck", "shortcut": "projection", "preact": True},
        {"depth": 18, "family": "imagenet", "width": 2, "head_init": "he_normal"},
        {"depth": 20, "skip": "concat", "zero_init_residual": True},
    ],
)
def test_arch_builds_the_same_net_again(kwargs):
    """`arch` is build_model's kwargs: Classifier's checkpoints rebuild the net from it."""
    with torch.device("meta"):
        model = build_model(**kwargs)
        again = build_model(**model.arch)
    assert again.arch == model.arch
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


def test_the_defaults_are_the_command_lines():
    """build_model() builds what `python -m degradation.run` trains: resnet-20, option A."""
    cli = OmegaConf.structured(RunConfig)
    arch = build_model().arch
    assert arch["depth"] == cli.depth == 20
    assert arch["skip"] == str(cli.skip) == "add"
    assert arch["shortcut"] == str(cli.shortcut) == "zero_pad"
    assert arch["family"] == str(cli.family) and arch["head_init"] == str(cli.head_init)
    assert count_parameters(build_model()) == CIFAR_OPTION_A[20]


def test_str_enum_members_are_accepted():
    Skip = enum.Enum("Skip", {"add": "add", "none": "none"}, type=str)
    Shortcut = enum.Enum("Shortcut", {"projection": "projection"}, type=str)
    model = build_model(20, Skip.add, Shortcut.projection)
    assert model.arch["skip"] == "add" and model.arch["shortcut"] == "projection"
    assert count_parameters(model) == CIFAR_OPTION_A[20] + OPTION_B_EXTRA


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"depth": 21}, ["depth=21", "6n+2", "20, 32, 44, 56, 110, 1202"]),
        ({"depth": 30, "block": "bottleneck"}, ["depth=30", "9n+2", "29, 56, 110, 164"]),
        ({"depth": 2}, ["depth=2", "6n+2"]),
        ({"depth": 0}, ["depth=0", ">= 1"]),
        ({"skip": "sum"}, ["skip='sum'", "none, add, concat"]),
        ({"shortcut": "B"}, ["shortcut='B'", "zero_pad, projection, all_projection"]),
        ({"skip": "none", "shortcut": "B"}, ["shortcut='B'", "zero_pad, projection"]),
        ({"block": "wide"}, ["block='wide'", "basic, bottleneck"]),
        ({"family": "mnist"}, ["family='mnist'", "cifar, imagenet"]),
        ({"depth": 20, "family": "imagenet"}, ["depth=20", "18, 34, 50, 101, 152"]),
        (
            {"depth": 18, "family": "imagenet", "block": "bottleneck"},
            ["block='bottleneck'", "basic"],
        ),
        ({"depth": 50, "family": "imagenet", "block": "basic"}, ["block='basic'", "bottleneck"]),
        ({"width": 0}, ["width=0", ">= 1"]),
        ({"num_classes": 0}, ["num_classes=0", ">= 1"]),
        ({"in_channels": -1}, ["in_channels=-1", ">= 1"]),
    ],
)
def test_bad_configurations_raise_one_line_value_errors(kwargs, expected):
    kwargs = {"depth": 20, **kwargs}
    with pytest.raises(ValueError) as info:
        build_model(**kwargs)
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


# --- portability: pickle, deepcopy, channels_last, torch.compile ----------------------------


def test_pickle_and_deepcopy_round_trip_give_equal_outputs():
    model = _seeded(depth=20, skip="add", shortcut="zero_pad").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
            torch.testing.assert_close(clone(x), expected, rtol=0, atol=0)
            assert clone.arch == model.arch


@pytest.mark.parametrize(("skip", "shortcut"), [("add", "zero_pad"), ("concat", "projection")])
def test_channels_last_matches_contiguous(skip, shortcut):
    model = _seeded(depth=20, skip=skip, shortcut=shortcut).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        actual = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_torch_compile_matches_eager():
    model = _seeded(depth=8).eval()  # n = 1: one block per stage, both zero-pad shortcuts
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        actual = torch.compile(model)(x)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


# --- measurement ----------------------------------------------------------------------------


def test_count_flops_resnet56_and_restores_modes():
    model = build_model(56, "add", "zero_pad")
    model.stages[0].eval()  # a mixed state must survive the measurement
    flops = count_flops(model)
    assert flops == pytest.approx(251e6, rel=0.05)  # 250,971,392 (FlopCounterMode; docs/recipe.md)
    assert model.training and not model.stages[0].training and model.stages[1].training


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"depth": 8}, 6 * 1 + 1),
        ({"depth": 20}, 6 * 3 + 1),
        ({"depth": 20, "skip": "none"}, 6 * 3 + 1),
        ({"depth": 20, "shortcut": "projection"}, 6 * 3 + 1),
        ({"depth": 20, "preact": True, "shortcut": "projection"}, 6 * 3 + 1),
        ({"depth": 29, "block": "bottleneck"}, 3 * 3 + 1),
        ({"depth": 18, "family": "imagenet"}, 2 * 8),  # 7x7 stem BN is not a 3x3 one
    ],
)
def test_conv3x3_bn_layers_counts(kwargs, expected):
    assert len(conv3x3_bn_layers(build_model(**kwargs))) == expected


def test_conv3x3_bn_layers_are_in_forward_order_and_follow_3x3_convs():
    model = build_model(20, "add", "projection").eval()
    layers = conv3x3_bn_layers(model)
    assert layers[0][0] == "stem.bn"
    assert layers[1][0] == "stages.0.0.branch.bn1"
    assert all(".shortcut." not in name for name, _ in layers)
    called: list[nn.Module] = []
    hooks = [bn.register_forward_hook(lambda m, _i, _o: called.append(m)) for _, bn in layers]
    model(torch.randn(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert called == [bn for _, bn in layers]
    modules = dict(model.named_modules())
    for name, bn in layers:  # in a post-act net the conv is the BN's sibling just before it
        parent, leaf = name.rsplit(".", 1)
        conv = modules[f"{parent}.{leaf.replace('bn', 'conv')}"]
        assert conv.kernel_size == (3, 3) and conv.out_channels == bn.num_features


@pytest.mark.parametrize(
    "overrides,name",
    [
        ({"depth": 20}, "resnet-20"),
        ({"depth": 56, "skip": "none"}, "plain-56"),
        ({"depth": 18, "family": "imagenet"}, "resnet-18 imagenet"),
        ({"depth": 18, "family": "imagenet", "skip": "none"}, "plain-18 imagenet"),
        ({"depth": 50, "family": "imagenet", "shortcut": "projection"},
         "resnet-50 imagenet projection"),
    ],
)  # fmt: skip
def test_variant_name_names_the_family_unless_cifar(overrides, name):
    assert variant_name(OmegaConf.merge(OmegaConf.structured(RunConfig), overrides)) == name


def test_cifar_and_imagenet_nets_of_one_depth_are_different_variants_and_wandb_runs():
    # depth 50 is valid for both families: 6n+2 basic blocks (cifar), Table 1's 50 (imagenet)
    runs, names = [], []
    for family in ("cifar", "imagenet"):
        spec = spec_of_settings({"depth": 50, "family": family})
        build_model(**spec.model.build_kwargs(num_classes=10, in_channels=3))  # both are real
        names.append(run_name(spec))
        summary = {"name": spec.model.name, "dataset": "synthetic", "depth": 50, "skip": "add"}
        runs.append(Run(Path(family), summary, {}, {}, None))
    assert [v.name for v in group_runs(runs)] == ["resnet-50", "resnet-50 imagenet"]
    assert names == ["resnet-50 zero_pad s0", "resnet-50 imagenet zero_pad s0"]


def test_head_init_pytorch_default_or_he_normal():
    torch.manual_seed(0)
    fc = build_model(20, "none").head.fc  # 64 -> 10
    bound = 1 / 64**0.5  # nn.Linear's default: kaiming_uniform_(a=sqrt(5)) = U(±1/sqrt(fan_in))
    assert fc.weight.abs().max() <= bound and fc.bias.abs().max() <= bound
    assert fc.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.15)
    assert torch.count_nonzero(fc.bias) == 10
    torch.manual_seed(0)
    he = build_model(20, "none", head_init="he_normal")
    std = (2 / 64) ** 0.5  # N(0, 2/fan_in), 0.177: 2.4x the default's 0.072
    assert he.head.fc.weight.std().item() == pytest.approx(std, rel=0.15)
    assert torch.count_nonzero(he.head.fc.bias) == 0
    assert he.arch["head_init"] == "he_normal"
    # only the head differs: the convs draw the same numbers either way
    torch.manual_seed(0)
    default = build_model(20, "none")
    assert torch.equal(default.stem.conv.weight, he.stem.conv.weight)
    last = [m.stages[2][2].branch.conv2.weight for m in (default, he)]
    assert torch.equal(*last)
    with pytest.raises(UserError, match="head_init='xavier' is not valid; choose one of: "
                       "pytorch, he_normal"):  # fmt: skip
        build_model(20, head_init="xavier")
