"""Packed members (models/packed.py): K nets fused into one step train exactly like K nets
trained one by one, and what cannot be packed is a one-line error."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from degradation.errors import UserError
from degradation.models import build_model, member_loss, pack_models
from degradation.module import Classifier
from degradation.preflight import spec_of_settings
from degradation.spec import OptimSpec

B = 8  # images per member and step


def optim_spec(**changes) -> OptimSpec:
    """The schema's default optimiser settings, parsed, with changes."""
    return replace(spec_of_settings({}).optim, **changes)


def members(specs, **common):
    """One net per (seed, skip): each built from its own seed, as a run would build it."""
    nets = []
    for seed, skip in specs:
        torch.manual_seed(seed)
        nets.append(build_model(skip=skip, **{"depth": 8, **common}))
    return nets


def batches(k: int, steps: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(k * B, 3, 32, 32, generator=g, dtype=dtype)
        yield x, torch.randint(0, 10, (k * B,), generator=g)


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)


def packed_state(net) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


MIXED = [(0, "none"), (1, "add"), (2, "add")]
CASES = {
    "plain and residual, option A": (MIXED, {}),
    "residual, option B": ([(0, "add"), (1, "add")], {"shortcut": "projection"}),
    "plain, 2 seeds": ([(0, "none"), (1, "none")], {}),
    "pre-act bottleneck, option C": (
        [(3, "add"), (4, "add")],
        {"depth": 11, "block": "bottleneck", "preact": True, "shortcut": "all_projection"},
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_packed_forward_is_each_members_forward(case):
    specs, common = CASES[case]
    nets = members(specs, **common)
    packed = pack_models(nets)
    assert packed.arch["members"] == [net.arch for net in nets]
    ((x, _),) = batches(len(nets), 1)
    for train in (True, False):  # batch statistics, then running statistics
        packed.train(train)
        for net in nets:
            net.train(train)
        expected = torch.stack([net(x[i * B : (i + 1) * B]) for i, net in enumerate(nets)])
        assert torch.allclose(packed(x), expected, atol=1e-5)
    # members may also come as a K×B×C×H×W tensor, channels_last included
    fused = packed(x.unflatten(0, (len(nets), B)).contiguous())
    assert torch.allclose(fused, expected, atol=1e-5)
    packed = packed.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(packed(x), expected, atol=1e-5)


@pytest.mark.parametrize("case", ["plain and residual, option A", "residual, option B"])
def test_sgd_steps_on_the_packed_net_are_each_members_steps(case):
    # float64, so that the comparison is of the arithmetic, not of rounding: lr 0.1 on batches
    # of 8 amplifies float32's summation-order differences to ~1e-5 in a few steps
    specs, common = CASES[case]
    nets = [net.double() for net in members(specs, **common)]
    packed = pack_models(nets)
    k, steps = len(nets), 4
    opt = sgd(packed.parameters())
    for x, y in batches(k, steps, dtype=torch.float64):
        opt.zero_grad()
        member_loss(packed(x), y).backward()
        opt.step()
    for i, net in enumerate(nets):  # each alone, on its own slice of the same batches
        opt = sgd(net.parameters())
        for x, y in batches(k, steps, dtype=torch.float64):
            opt.zero_grad()
            F.cross_entropy(net(x[i * B : (i + 1) * B]), y[i * B : (i + 1) * B]).backward()
            opt.step()
    expected = packed_state(pack_models(nets).net)
    got = packed_state(packed.net)
    assert expected.keys() == got.keys()
    for name, tensor in got.items():  # weights, BN affine and running statistics
        assert torch.allclose(tensor, expected[name], rtol=1e-9, atol=1e-12), name
    initial = packed_state(pack_models(members(specs, **common)).net)
    assert not torch.allclose(got["stem.conv.weight"].float(), initial["stem.conv.weight"])


def test_member_loss_of_one_net_is_cross_entropy_and_of_k_is_the_sum_of_means():
    logits, labels = torch.randn(3, 5, 10), torch.randint(0, 10, (15,))
    means = [F.cross_entropy(logits[i], labels[i * 5 : (i + 1) * 5]) for i in range(3)]
    assert torch.allclose(member_loss(logits, labels), sum(means))
    assert torch.allclose(member_loss(logits[0], labels[:5]), means[0])


def test_classifier_windows_report_the_members_mean_loss_and_error():
    nets = members(MIXED)
    module = Classifier(pack_models(nets), optim_spec())
    ((x, y),) = batches(3, 1)
    loss_sum, errors, count = module.training_step((x, y), 0)["window"].tolist()
    with torch.no_grad():
        logits = torch.cat([net(x[i * B : (i + 1) * B]) for i, net in enumerate(nets)])
    assert count == 3 * B
    assert loss_sum / count == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert errors == (logits.argmax(1) != y).sum().item()


@pytest.mark.parametrize(
    ("nets", "message"),
    [
        (lambda: members([(0, "add"), (1, "concat")]), "cannot pack model.stages.0.0.merge"),
        (lambda: members([(0, "concat"), (1, "concat")]), "cannot pack skip='concat' nets"),
        (
            lambda: members([(0, "none"), (1, "add")], shortcut="projection"),
            "a projection shortcut has weights",
        ),
        (lambda: members([(0, "add")]) + members([(1, "add")], depth=14), "members' layers differ"),
        (lambda: members([(0, "add")]) + members([(1, "add")], width=2), "conv shapes differ"),
        (lambda: [], "at least one model"),
    ],
)
def test_what_cannot_be_packed_is_a_one_line_error(nets, message):
    with pytest.raises(UserError) as err:
        pack_models(nets())
    assert message in str(err.value) and "\n" not in str(err.value)


def train_losses(net, steps: int, device: str, step_begin=lambda: None, autocast=False):
    """Per-step member_loss of SGD on the net, on the same batches for every caller."""
    net = net.to(device)
    opt = sgd(net.parameters())
    losses = []
    for x, y in batches(3, steps):
        step_begin()
        opt.zero_grad()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = member_loss(net(x.to(device)), y.to(device))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow
def test_a_compiled_packed_net_trains_like_the_eager_one():
    eager = train_losses(pack_models(members(MIXED)), 3, "cpu")
    compiled = pack_models(members(MIXED))
    compiled.compile(mode="default")
    assert train_losses(compiled, 3, "cpu") == pytest.approx(eager, rel=1e-4)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_packed_net_on_the_cuda_fast_path_trains_like_eager_fp32():
    # the benchmark's --fuse path: bf16 autocast, channels_last, CUDA graphs
    eager = train_losses(pack_models(members(MIXED)), 3, "cpu")
    fast = pack_models(members(MIXED)).to(memory_format=torch.channels_last)
    fast.compile(mode="reduce-overhead")
    mark = torch.compiler.cudagraph_mark_step_begin
    losses = train_losses(fast, 3, "cuda", step_begin=mark, autocast=True)
    assert losses == pytest.approx(eager, rel=3e-2)
