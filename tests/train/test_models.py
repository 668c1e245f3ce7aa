"""Models: parameter counts, the features/classifier split, heads, dropout, option-A shortcuts and
torchvision-compatible ResNet-50 / ResNet-101 weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lpl_train.models import (
    ImageNetResNet,
    NormedLinear,
    build_model,
    count_parameters,
    load_torchvision_state_dict,
)
from lpl_train.models.cifar_resnet import CifarResNet, OptionAShortcut
from lpl_train.models.wrn import WideResNet


def _bn(c: int) -> int:
    return 2 * c


def test_published_parameter_counts() -> None:
    # He et al. / LDAM-DRW option-A ResNets: 0.46M and 1.7M; WRN and torchvision ResNet-50 counts.
    assert count_parameters(build_model("resnet32", 10)) == 464_154
    assert count_parameters(build_model("resnet110", 10)) == 1_727_962
    assert count_parameters(build_model("wrn16_8", 10)) == 10_961_370
    assert count_parameters(build_model("wrn28_10", 10)) == 36_479_194
    assert count_parameters(build_model("resnet50", 1000)) == 25_557_032


def _cifar_resnet_count(depth: int, num_classes: int, in_channels: int = 3) -> int:
    """Option-A CIFAR ResNet-(6n+2) by hand: 3x3 convs without bias, BN (2 parameters per channel)."""
    n = (depth - 2) // 6
    total = in_channels * 16 * 9 + 2 * 16
    for c_in, c in ((16, 16), (16, 32), (32, 64)):
        first = c_in * c * 9 + c * c * 9 + 4 * c
        total += first + (n - 1) * (2 * c * c * 9 + 4 * c)
    return total + 64 * num_classes + num_classes


def test_cifar_resnet_family_counts_by_hand() -> None:
    # 269,722 is the published count of ResNet-20 (He et al. 2016, Table 6: 0.27M)
    assert _cifar_resnet_count(20, 10) == 269_722
    for depth in (8, 20, 32, 110):
        name = f"resnet{depth}"
        assert count_parameters(build_model(name, 10)) == _cifar_resnet_count(depth, 10), name
    assert count_parameters(build_model("resnet8", 10, in_channels=1)) == 75_002
    assert _cifar_resnet_count(8, 10, in_channels=1) == 75_002


def _fmnist_cnn_count(width: int, num_classes: int, in_channels: int = 1) -> int:
    """The small CNN by hand: 3x3 convs without bias to w, 2w and 4w channels, each with BN; a linear head
    on the 4w pooled features."""
    total, c_in = 0, in_channels
    for c in (width, 2 * width, 4 * width):
        total += c_in * c * 9 + _bn(c)
        c_in = c
    return total + c_in * num_classes + num_classes


def test_fmnist_cnn_counts_by_hand() -> None:
    # docs/data-and-models.md: 94,186 at the default width 32 and 10 classes
    assert _fmnist_cnn_count(32, 10) == 94_186
    assert count_parameters(build_model("fmnist_cnn", 10)) == 94_186
    for width, classes, in_channels in ((16, 10, 1), (8, 7, 3)):
        model = build_model("fmnist_cnn", classes, width=width, in_channels=in_channels)
        assert count_parameters(model) == _fmnist_cnn_count(width, classes, in_channels)


def _bottleneck_resnet_count(blocks: tuple[int, ...], num_classes: int) -> int:
    """Parameters of a torchvision bottleneck ResNet, counted by hand: stem 7x7 conv + BN; per block
    1x1, 3x3, 1x1 convs (no bias) + 3 BNs, a 1x1 projection + BN in each stage's first block; fc."""
    total = 3 * 49 * 64 + _bn(64)
    in_c = 64
    for planes, n in zip((64, 128, 256, 512), blocks, strict=True):
        out = 4 * planes
        for b in range(n):
            i = in_c if b == 0 else out
            total += i * planes + 9 * planes * planes + planes * out + _bn(planes) * 2 + _bn(out)
            if b == 0:
                total += in_c * out + _bn(out)
        in_c = out
    return total + 2048 * num_classes + num_classes


def test_bottleneck_resnet_counts_by_hand() -> None:
    # the hand count reproduces torchvision's published totals, and the models match it
    assert _bottleneck_resnet_count((3, 4, 6, 3), 1000) == 25_557_032
    assert _bottleneck_resnet_count((3, 4, 23, 3), 1000) == 44_549_160
    assert count_parameters(build_model("resnet101", 1000)) == 44_549_160
    assert count_parameters(build_model("resnet101", 80)) == _bottleneck_resnet_count(
        (3, 4, 23, 3), 80
    )
    # the PFC neck replaces fc(2048 -> C) by Linear(2048, 256) + BN1d(256) + fc(256 -> C)
    pfc = build_model("resnet101", 80, neck="pfc")
    assert count_parameters(pfc) == _bottleneck_resnet_count((3, 4, 23, 3), 0) + (
        2048 * 256 + 256 + _bn(256) + 256 * 80 + 80
    )
    assert [len(getattr(pfc, f"layer{i}")) for i in (1, 2, 3, 4)] == [3, 4, 23, 3]
    with pytest.raises(ValueError, match=r"depth must be one of \[50, 101\], got 152"):
        ImageNetResNet(152, 10)


def test_resnet110_option_b_and_se_counts() -> None:
    # option B adds two 1x1 conv + BN projections; SE adds W1 (c x c/16 + b) and W2 (c/16 x c + b) per block
    proj = 16 * 32 + _bn(32) + 32 * 64 + _bn(64)
    assert count_parameters(build_model("resnet110", 10, shortcut="B")) == 1_727_962 + proj
    se = sum(18 * (2 * c * (c // 16) + c // 16 + c) for c in (16, 32, 64))
    assert count_parameters(build_model("se_resnet110", 10)) == 1_727_962 + proj + se


def test_la_resnet32_count_by_hand() -> None:
    total = 3 * 9 * 16 + _bn(16)  # stem
    in_c = 16
    for w in (16, 32, 64):
        for b in range(5):
            i = in_c if b == 0 else w
            total += i * w + 9 * w * w + w * w + 3 * _bn(w)
            if b == 0:
                total += in_c * w + _bn(w)
        in_c = w
    total += _bn(64) + 64 * 10 + 10
    assert count_parameters(build_model("resnet32_la", 10)) == total
    assert 290_000 < total < 310_000  # the "0.30M" network


def test_la_stem_is_36x36() -> None:
    m = build_model("resnet32_la", 10)
    assert m.stem(torch.zeros(1, 3, 32, 32)).shape == (1, 16, 36, 36)


@pytest.mark.parametrize(
    ("name", "kw", "shape", "features"),
    [
        ("resnet32", {}, (3, 8, 8), 64),
        ("resnet8", {"in_channels": 1}, (1, 28, 28), 64),
        ("resnet110", {"dropout": 0.2}, (3, 8, 8), 64),
        ("se_resnet110", {}, (3, 8, 8), 64),
        ("resnet32_la", {}, (3, 8, 8), 64),
        ("wrn16_8", {"dropout": 0.3}, (3, 8, 8), 512),
        ("fmnist_cnn", {}, (1, 28, 28), 128),
        ("fmnist_cnn", {}, (1, 56, 56), 128),
        ("mlp", {"in_features": 12}, (12,), 64),
        ("linear", {"in_features": 12}, (12,), 12),
    ],
)
def test_features_and_classifier(name: str, kw: dict, shape: tuple, features: int) -> None:
    torch.manual_seed(0)
    m = build_model(name, 7, **kw).eval()
    x = torch.randn(3, *shape)
    f = m.forward_features(x)
    assert f.shape == (3, features) and m.num_features == features
    assert isinstance(m.classifier, nn.Linear) and m.classifier.out_features == 7
    assert torch.allclose(m(x), m.classifier(f))
    cos = build_model(name, 7, use_norm=True, **kw).eval()
    assert isinstance(cos.classifier, NormedLinear)
    out = cos(x)
    assert out.shape == (3, 7) and out.abs().max() <= 1 + 1e-5


@pytest.mark.parametrize("name", ["resnet110", "wrn16_8", "fmnist_cnn"])
def test_classifier_bias_false_drops_the_bias_and_nothing_else(name: str) -> None:
    """The head loses its bias (L-Softmax's logits have none); the weights, every other parameter and the
    random draws after the build are those of the model with the bias."""
    torch.manual_seed(3)
    a = build_model(name, 10)
    after_a = torch.rand(3)
    torch.manual_seed(3)
    b = build_model(name, 10, classifier_bias=False)
    after_b = torch.rand(3)
    assert b.classifier.bias is None and torch.equal(after_a, after_b)
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) - set(sb) == {"classifier.bias"}
    assert all(torch.equal(sa[k], sb[k]) for k in sb)
    with pytest.raises(ValueError, match="classifier_bias=False needs a linear head"):
        build_model(name, 10, use_norm=True, classifier_bias=False)
    with pytest.raises(TypeError, match="classifier_bias must be a bool"):
        build_model(name, 10, classifier_bias="no")


def test_linear_model_is_affine() -> None:
    m = build_model("linear", 2, in_features=3)
    x = torch.randn(5, 3)
    assert torch.allclose(m(x), x @ m.classifier.weight.T + m.classifier.bias)


@pytest.mark.parametrize(("name", "shape", "layers"), [("resnet32", (3, 8, 8), 15),  # one per BasicBlock
                                                       ("fmnist_cnn", (1, 12, 12), None),
                                                       ("wrn16_8", (3, 8, 8), None)])  # fmt: skip
def test_dropout_only_in_training(name: str, shape: tuple, layers: int | None) -> None:
    m = build_model(name, 5, dropout=0.5)
    found = [k for k in m.modules() if isinstance(k, nn.Dropout)]
    assert found and all(k.p == 0.5 for k in found) and layers in (None, len(found))
    x = torch.randn(2, *shape)
    m.train()
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, m(x))
    m.eval()
    assert torch.equal(m(x), m(x))
    assert not any(isinstance(k, nn.Dropout) for k in build_model(name, 5).modules())


def test_wide_resnet_dropout_sits_between_the_two_convs_of_each_block() -> None:
    """Zagoruyko & Komodakis (2016), Sec. 2.4: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3 (+ shortcut). The
    block's training-mode output is rebuilt by hand around the dropout's own output."""
    torch.manual_seed(0)
    model = WideResNet(16, 2, 10, dropout=0.5).double().eval()
    blk = model.block2[1]  # an identity-shortcut block
    blk.drop.train()
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        blk.drop.register_forward_hook(lambda m, i, o: seen.update(d_in=i[0], d_out=o)),
        blk.conv2.register_forward_pre_hook(lambda m, i: seen.update(c2_in=i[0])),
    ]
    x = torch.randn(2, 64, 8, 8, dtype=torch.float64)  # WRN-16-2: stage 2 is 32 * 2 wide
    with torch.no_grad():
        out = blk(x)
        want_in = torch.relu(blk.bn2(blk.conv1(torch.relu(blk.bn1(x)))))
        want_out = blk.conv2(seen["d_out"]) + x
    for h in hooks:
        h.remove()
    torch.testing.assert_close(seen["d_in"], want_in, rtol=1e-12, atol=1e-12)
    assert torch.equal(seen["c2_in"], seen["d_out"]) and not torch.equal(seen["d_out"], want_in)
    torch.testing.assert_close(out, want_out, rtol=1e-12, atol=1e-12)


def test_option_a_shortcut() -> None:
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).view(2, 16, 4, 4)
    y = OptionAShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 2, 2)
    assert torch.all(y[:, :8] == 0) and torch.all(y[:, 24:] == 0)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])


def _torchvision_keys(blocks: tuple[int, ...] = (3, 4, 6, 3)) -> set[str]:
    """The parameter/buffer names of torchvision's resnet50 (or resnet101 with blocks (3, 4, 23, 3)),
    written out from its layout."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight", "fc.weight", "fc.bias", *(f"bn1.{s}" for s in bn)}
    for layer, n in enumerate(blocks, start=1):
        for b in range(n):
            p = f"layer{layer}.{b}"
            for i in (1, 2, 3):
                keys.add(f"{p}.conv{i}.weight")
                keys.update(f"{p}.bn{i}.{s}" for s in bn)
            if b == 0:
                keys.add(f"{p}.downsample.0.weight")
                keys.update(f"{p}.downsample.1.{s}" for s in bn)
    return keys


def test_resnet50_torchvision_state_dict(tmp_path: Path) -> None:
    src = build_model("resnet50", 1000)
    sd = {
        ("fc." + k[len("classifier.") :] if k.startswith("classifier.") else k): v
        for k, v in src.state_dict().items()
    }
    assert set(sd) == _torchvision_keys()
    torch.save(sd, tmp_path / "r50.pth")
    same = build_model("resnet50", 1000, weights=str(tmp_path / "r50.pth"))
    assert torch.equal(same.layer3[2].conv2.weight, src.layer3[2].conv2.weight)
    assert torch.equal(same.classifier.weight, src.classifier.weight)
    # fine-tuning: a different head skips fc.*, the backbone still loads
    ft = build_model(
        "resnet50", 20, weights=tmp_path / "r50.pth", neck="pfc", frozen_stages=1, norm_eval=True
    )
    assert torch.equal(ft.layer4[0].conv1.weight, src.layer4[0].conv1.weight)
    assert ft.num_features == 256 and ft.classifier.out_features == 20
    assert not ft.conv1.weight.requires_grad and not ft.layer1[0].conv1.weight.requires_grad
    assert ft.layer2[0].conv1.weight.requires_grad
    ft.train()
    assert not ft.layer3[0].bn1.training and ft.neck[1].training
    bad = dict(sd)
    bad["layer1.0.conv9.weight"] = bad.pop("layer1.0.conv1.weight")
    with pytest.raises(ValueError, match="conv9"):
        load_torchvision_state_dict(ft, bad)


def test_resnet101_torchvision_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = build_model("resnet101", 1000)
    sd = {
        ("fc." + k[len("classifier.") :] if k.startswith("classifier.") else k): v
        for k, v in src.state_dict().items()
    }
    assert set(sd) == _torchvision_keys((3, 4, 23, 3))
    torch.save(sd, tmp_path / "r101.pth")
    ft = build_model("resnet101", 80, weights=tmp_path / "r101.pth", neck="pfc", frozen_stages=1)
    assert torch.equal(ft.layer3[22].conv3.weight, src.layer3[22].conv3.weight)
    assert torch.equal(ft.layer3[22].bn3.running_var, src.layer3[22].bn3.running_var)
    assert not ft.layer1[2].conv1.weight.requires_grad and ft.layer3[22].conv1.weight.requires_grad
    # a ResNet-50 file does not fit: the error names the architecture and the missing blocks
    r50 = {
        ("fc." + k[len("classifier.") :] if k.startswith("classifier.") else k): v
        for k, v in build_model("resnet50", 1000).state_dict().items()
    }
    torch.save(r50, tmp_path / "r50.pth")
    with pytest.raises(ValueError, match=r"resnet101: missing \['layer3\.10\."):
        build_model("resnet101", 80, weights=tmp_path / "r50.pth")
    # files are read with weights_only=True: a pickled object is refused, naming the file
    torch.save({"conv1.weight": torch.zeros(1), "x": Path("a")}, tmp_path / "obj.pth")
    with pytest.raises(ValueError, match=r"obj\.pth"):
        build_model("resnet101", 80, weights=tmp_path / "obj.pth")


def test_build_model_errors() -> None:
    with pytest.raises(
        ValueError, match=r"model name must be one of \[.*'resnet32_la'.*got 'resnet18'"
    ):
        build_model("resnet18", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet32", 0)
    with pytest.raises(ValueError, match=r"width.*allowed keywords"):
        build_model("resnet32", 10, width=2)
    with pytest.raises(ValueError, match="dropout"):
        build_model("wrn16_8", 10, dropout=1.5)
    with pytest.raises(ValueError, match="in_features"):
        build_model("mlp", 10, in_features=0)


# ------------------------------------------------------------------ forward pass against a functional reference
def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so that every BN placement shows in the output."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)


def _bn_f(x, bn):
    return torch.nn.functional.batch_norm(
        x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
    )


def _conv_f(x, conv, stride=1, padding=0):
    return torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride, padding)


def _se_f(x, se):
    s = torch.relu(x.mean((2, 3)) @ se.fc1.weight.T + se.fc1.bias)
    return x * torch.sigmoid(s @ se.fc2.weight.T + se.fc2.bias)[:, :, None, None]


def _cifar_resnet_reference(model, x, shortcut="A", se=False):
    """He et al.'s CIFAR ResNet written out from its description: conv-BN-ReLU stem, three stages of
    BasicBlocks (conv-BN-ReLU, conv-BN, [SE], + shortcut, ReLU), global average pooling, linear head."""
    relu = torch.relu
    out = relu(_bn_f(_conv_f(x, model.conv1, 1, 1), model.bn1))
    for stage, stride in ((model.layer1, 1), (model.layer2, 2), (model.layer3, 2)):
        for i, blk in enumerate(stage):
            s = stride if i == 0 else 1
            h = relu(_bn_f(_conv_f(out, blk.conv1, s, 1), blk.bn1))
            h = _bn_f(_conv_f(h, blk.conv2, 1, 1), blk.bn2)
            if se:
                h = _se_f(h, blk.se)
            c_in, c = out.shape[1], h.shape[1]
            if s == 1 and c_in == c:
                short = out
            elif shortcut == "A":  # subsample, then zero channels split equally on both sides
                sub = out[:, :, ::s, ::s]
                pad = (c - c_in) // 2
                short = torch.cat(
                    [
                        torch.zeros_like(sub[:, :pad]),
                        sub,
                        torch.zeros_like(sub[:, : c - c_in - pad]),
                    ],
                    1,
                )
            else:
                short = _bn_f(_conv_f(out, blk.shortcut[0], s), blk.shortcut[1])
            out = relu(h + short)
    feats = out.mean((2, 3))
    return feats @ model.classifier.weight.T + model.classifier.bias


@pytest.mark.parametrize(
    ("name", "kw"),
    [("resnet20", {}), ("resnet20", {"shortcut": "B"}), ("se_resnet110", {"shortcut": "B"})],
)
def test_cifar_resnet_forward_matches_a_functional_reference(name: str, kw: dict) -> None:
    torch.manual_seed(0)
    model = build_model(name, 10, **kw).double().eval()
    _randomise_bn(model)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        want = _cifar_resnet_reference(model, x, kw.get("shortcut", "A"), se=name.startswith("se_"))
        torch.testing.assert_close(model(x), want, rtol=1e-10, atol=1e-10)


def _bottleneck_stages(out, stages, shortcut: str):
    """Bottleneck stages written out: 1x1-BN-ReLU, 3x3 (the stage's stride on its first block, padding 1)
    -BN-ReLU, 1x1-BN, + the shortcut (1x1/stride conv-BN, attribute ``shortcut``, on each stage's first
    block; identity after), ReLU."""
    relu = torch.relu
    for blocks, stride in stages:
        for i, blk in enumerate(blocks):
            s = stride if i == 0 else 1
            h = relu(_bn_f(_conv_f(out, blk.conv1), blk.bn1))
            h = relu(_bn_f(_conv_f(h, blk.conv2, s, 1), blk.bn2))
            h = _bn_f(_conv_f(h, blk.conv3), blk.bn3)
            proj = getattr(blk, shortcut)
            short = _bn_f(_conv_f(out, proj[0], s), proj[1]) if i == 0 else out
            out = relu(h + short)
    return out


def test_la_resnet32_forward_matches_a_functional_reference() -> None:
    """The LA code's network from its description: zero-pad 3, valid 3x3 stem conv-BN-ReLU, 3 stages of 5
    blocks (1x1-BN-ReLU, 3x3-BN-ReLU, 1x1-BN, + shortcut, ReLU; projection on each stage's first block),
    a final BN, the spatial mean and the dense head."""
    torch.manual_seed(0)
    model = build_model("resnet32_la", 10).double().eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    relu = torch.relu
    stem_conv, stem_bn = model.stem[1], model.stem[2]
    out = relu(_bn_f(_conv_f(torch.nn.functional.pad(x, (3, 3, 3, 3)), stem_conv), stem_bn))
    assert [len(stage) for stage in model.stages] == [5, 5, 5]
    out = _bottleneck_stages(out, zip(model.stages, (1, 2, 2), strict=True), "shortcut")
    feats = _bn_f(out, model.final_bn).mean((2, 3))
    want = feats @ model.classifier.weight.T + model.classifier.bias
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-10, atol=1e-10)


def test_cifar_resnet_initialisation() -> None:
    """He-normal convolutions and head (std sqrt(2 / fan_in)), BN at (1, 0); the LA net's head N(0, 0.01)
    with zero bias, as in its code."""
    torch.manual_seed(0)
    model = build_model("resnet110", 10).requires_grad_(False)
    conv = model.layer3[5].conv2.weight  # 64 x 64 x 3 x 3: fan_in 576
    assert float(conv.std()) == pytest.approx((2 / 576) ** 0.5, rel=0.03)
    head = model.classifier.weight  # 10 x 64
    assert float(head.std()) == pytest.approx((2 / 64) ** 0.5, rel=0.15)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)
    la = build_model("resnet32_la", 10).requires_grad_(False)
    assert float(la.classifier.weight.std()) == pytest.approx(0.01, rel=0.15)
    assert bool((la.classifier.bias == 0).all())
    assert float(la.stages[2][1].conv2.weight.std()) == pytest.approx((2 / 576) ** 0.5, rel=0.03)


def test_cifar_resnet_argument_checks() -> None:
    for kw, match in (
        ({"depth": True}, "depth must be 6n\\+2"),
        ({"depth": 30}, "depth must be 6n\\+2"),
        ({"shortcut": "C"}, "shortcut must be 'A' or 'B'"),
        ({"in_channels": 0}, "in_channels"),
    ):
        with pytest.raises(ValueError, match=match):
            CifarResNet(**{"depth": 20, "num_classes": 10, **kw})


def test_wide_resnet_forward_matches_a_functional_reference() -> None:
    """Zagoruyko & Komodakis' pre-activation blocks from their description: BN-ReLU (shared by the
    1x1 shortcut where the shape changes), conv3x3, BN-ReLU, [dropout], conv3x3, + shortcut; final
    BN-ReLU, mean pool, linear head."""
    torch.manual_seed(0)
    model = WideResNet(16, 2, 10).double().eval()  # WRN-16-8's structure at a quarter of its width
    _randomise_bn(model)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    relu = torch.relu
    out = _conv_f(x, model.conv1, 1, 1)
    for stage, stride in ((model.block1, 1), (model.block2, 2), (model.block3, 2)):
        assert len(stage) == 2  # (16 - 4) / 6 blocks per stage
        for i, blk in enumerate(stage):
            s = stride if i == 0 else 1
            o = relu(_bn_f(out, blk.bn1))
            short = _conv_f(o, blk.shortcut, s) if i == 0 else out
            h = relu(_bn_f(_conv_f(o, blk.conv1, s, 1), blk.bn2))
            out = _conv_f(h, blk.conv2, 1, 1) + short
    feats = relu(_bn_f(out, model.bn)).mean((2, 3))
    want = feats @ model.classifier.weight.T + model.classifier.bias
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-10, atol=1e-10)
    assert feats.shape[1] == 64 * 2 == model.num_features


def test_wide_resnet_initialisation_and_checks() -> None:
    """Convolutions He-normal in fan-out mode (std sqrt(2 / (k·k·out))), zero head bias."""
    torch.manual_seed(0)
    model = build_model("wrn16_8", 10).requires_grad_(False)
    w = model.block2[0].conv1.weight  # 256 x 128 x 3 x 3: fan-out 9·256, fan-in 9·128
    assert float(w.std()) == pytest.approx((2 / (9 * 256)) ** 0.5, rel=0.02)
    assert bool((model.classifier.bias == 0).all())
    for kw, match in (
        ({"depth": 18}, "6n\\+4"),
        ({"widen": 0}, "widen"),
        ({"in_channels": 0}, "in_channels"),
    ):
        with pytest.raises(ValueError, match=match):
            WideResNet(**{"depth": 16, "widen": 2, "num_classes": 10, **kw})


def test_fmnist_cnn_forward_matches_a_functional_reference() -> None:
    """Three conv3x3-BN-ReLU layers of widths w, 2w, 4w with 2x2 max-pooling after the first two, then
    the global mean and the linear head."""
    torch.manual_seed(0)
    model = build_model("fmnist_cnn", 10, width=4).double().eval()
    _randomise_bn(model)
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.body if isinstance(m, nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16]
    h = x
    for i, (conv, bn) in enumerate(zip(convs, bns, strict=True)):
        h = torch.relu(_bn_f(_conv_f(h, conv, 1, 1), bn))
        if i < 2:
            h = torch.nn.functional.max_pool2d(h, 2)
    want = h.mean((2, 3)) @ model.classifier.weight.T + model.classifier.bias
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-10, atol=1e-10)


def test_cifar_resnet_dropout_sits_after_the_first_conv_bn_relu_of_each_block() -> None:
    """ISDA's "+Dropout": the mask is applied to conv1-BN-ReLU's output, and conv2 reads the masked map."""
    torch.manual_seed(0)
    model = build_model("resnet32", 10, dropout=0.5).double().eval()
    _randomise_bn(model)
    blk = model.layer2[1]
    blk.drop.train()  # dropout active, BN on its running statistics
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        blk.drop.register_forward_hook(lambda m, i, o: seen.update(d_in=i[0], d_out=o)),
        blk.conv2.register_forward_pre_hook(lambda m, i: seen.update(c2_in=i[0])),
    ]
    x = torch.randn(2, 32, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        out = blk(x)
        want_in = torch.relu(_bn_f(_conv_f(x, blk.conv1, 1, 1), blk.bn1))
        want_out = torch.relu(_bn_f(_conv_f(seen["d_out"], blk.conv2, 1, 1), blk.bn2) + x)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(seen["d_in"], want_in, rtol=1e-12, atol=1e-12)
    assert torch.equal(seen["c2_in"], seen["d_out"]) and not torch.equal(seen["d_out"], want_in)
    torch.testing.assert_close(out, want_out, rtol=1e-12, atol=1e-12)


def test_cifar_resnet_refuses_a_depth_without_blocks() -> None:
    # 6n + 2 with n = 0 (depth 2) or n < 0 (depth -4) has no residual block: refused, not built empty
    for depth in (2, -4):
        with pytest.raises(ValueError, match=r"depth must be 6n\+2 with n >= 1"):
            CifarResNet(depth, 10)


def _bottleneck_reference(model, x):
    """torchvision's ResNet-50 (v1.5) written out from its description: 7x7/2 conv-BN-ReLU stem, 3x3/2
    max-pool (padding 1); bottlenecks 1x1-BN-ReLU, 3x3 (stride here, padding 1)-BN-ReLU, 1x1-BN, + the
    shortcut (1x1/stride conv-BN on each stage's first block), ReLU; global mean, linear head."""
    relu = torch.relu
    out = relu(_bn_f(_conv_f(x, model.conv1, 2, 3), model.bn1))
    out = torch.nn.functional.max_pool2d(out, 3, 2, 1)
    stages = ((model.layer1, 1), (model.layer2, 2), (model.layer3, 2), (model.layer4, 2))
    out = _bottleneck_stages(out, stages, "downsample")
    return out.mean((2, 3)) @ model.classifier.weight.T + model.classifier.bias


def test_resnet50_forward_matches_a_functional_reference() -> None:
    torch.manual_seed(0)
    model = build_model("resnet50", 5).double().eval()
    _randomise_bn(model)
    # 40 x 40 -> 20 (stem) -> 10 (max-pool) -> 10, 5, 3, 2 (layer1 .. layer4)
    x = torch.randn(2, 3, 40, 40, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _bottleneck_reference(model, x), rtol=1e-9, atol=1e-9)


def test_resnet_frozen_stages_keep_their_batch_norm_statistics_in_training() -> None:
    """Frozen stages (stem + layer1 .. layer<k>) take no gradient and stay in eval mode under train(), so
    their BN running statistics do not move; the stages after them train normally."""
    torch.manual_seed(0)
    model = build_model("resnet50", 4, frozen_stages=2).train()
    frozen = [model.bn1, model.layer1[0].bn1, model.layer2[3].bn3]
    trained = [model.layer3[0].bn1, model.layer4[2].bn3]
    assert not any(bn.training for bn in frozen) and all(bn.training for bn in trained)
    before = [bn.running_mean.clone() for bn in frozen + trained]
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64) * 3 + 1)
    after = [bn.running_mean for bn in frozen + trained]
    assert all(torch.equal(b, a) for b, a in zip(before[:3], after[:3], strict=True))
    assert not any(torch.equal(b, a) for b, a in zip(before[3:], after[3:], strict=True))
    assert (
        not model.layer2[3].conv2.weight.requires_grad
        and model.layer3[0].conv2.weight.requires_grad
    )
    with pytest.raises(ValueError, match=r"frozen_stages must be an int in 0\.\.4, got 5"):
        ImageNetResNet(50, 10, frozen_stages=5)
    with pytest.raises(TypeError, match="norm_eval must be a bool, got 1"):
        ImageNetResNet(50, 10, norm_eval=1)


def test_resnet50_initialisation_and_pfc_neck() -> None:
    """torchvision's initialisation: convolutions He-normal in fan-out mode (std sqrt(2 / (k·k·out))). The
    PFC neck of the DB recipe: Linear(2048, 256), BN1d, Dropout(0.5), a head N(0, 0.01) with zero bias."""
    torch.manual_seed(0)
    model = build_model("resnet50", 10, neck="pfc").requires_grad_(False)
    w = model.layer3[1].conv2.weight  # 256 x 256 x 3 x 3: fan-out 9·256 (fan-in is the same here)
    assert float(w.std()) == pytest.approx((2 / (9 * 256)) ** 0.5, rel=0.02)
    w = model.layer4[0].conv1.weight  # 512 x 1024 x 1 x 1: fan-out 512, fan-in 1024
    assert float(w.std()) == pytest.approx((2 / 512) ** 0.5, rel=0.02)
    assert float(model.classifier.weight.std()) == pytest.approx(0.01, rel=0.15)
    assert bool((model.classifier.bias == 0).all())
    drop = model.neck[2]
    assert isinstance(drop, nn.Dropout) and drop.p == 0.5


def test_mlp_forward_matches_a_functional_reference() -> None:
    """``depth`` hidden Linear-ReLU layers of ``hidden`` units on the flattened input, then the head."""
    torch.manual_seed(0)
    model = build_model("mlp", 3, in_features=6, hidden=5, depth=3).double()
    linears = [m for m in model.body if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 5), (5, 5), (5, 5)]
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    h = x.reshape(4, 6)
    for lin in linears:
        h = torch.relu(h @ lin.weight.T + lin.bias)
    want = h @ model.classifier.weight.T + model.classifier.bias
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-12, atol=1e-12)


def test_linear_model_refuses_the_wrong_number_of_features() -> None:
    m = build_model("linear", 2, in_features=3)
    for width in (2, 4):
        with pytest.raises(ValueError, match=f"x has {width} features per sample, expected 3"):
            m(torch.zeros(5, width))


def test_count_parameters_trainable_only() -> None:
    m = build_model("linear", 4, in_features=3)  # W 4 x 3 + b 4
    m.classifier.bias.requires_grad_(False)
    assert count_parameters(m) == 16 and count_parameters(m, trainable_only=True) == 12


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_a_model_without_its_required_parameter_says_which(name) -> None:
    with pytest.raises(TypeError, match=rf"^model '{name}' needs in_features \(no default\)$"):
        build_model(name, num_classes=3)
    assert build_model(name, num_classes=3, in_features=4)(torch.zeros(2, 4)).shape == (2, 3)
