import shutil

import pytest
import torch

from worker.engine import models
from worker.engine.models import MOBILENET_V2_FILE, build_model, find_mobilenet_weights, mobilenet_v2_features


def test_unet_small_keeps_any_input_size():
    net = build_model("unet_small", 5).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 5, 32, 32)
        assert net(torch.rand(1, 3, 30, 45)).shape == (1, 5, 30, 45)


def test_unet_small_receptive_field_covers_a_64px_image():
    net = build_model("unet_small", 3).eval()
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    net(x)[0, :, 0, 0].sum().backward()  # top-left output pixel ...
    assert x.grad[0, :, 63, 63].abs().sum() > 0  # ... depends on the bottom-right input pixel


def test_registry_rejects_unknown_names_and_bad_class_counts():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet", 3)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("unet_small", 1)
    with pytest.raises(ValueError, match="no pretrained"):
        build_model("unet_small", 3, pretrained=True)


def test_mobilenet_features_match_torchvision_keys_and_load_strictly():
    path = find_mobilenet_weights()  # the installed offline package
    assert path.name == MOBILENET_V2_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = mobilenet_v2_features()
    expected = {k[len("features."):] for k in state if k.startswith("features.")}
    assert set(features.state_dict()) == expected
    models.load_mobilenet_encoder(features)
    assert torch.equal(features[0][0].weight, state["features.0.0.weight"])
    assert torch.equal(features[17].conv[2].weight, state["features.17.conv.2.weight"])


def test_deeplab_uses_the_imagenet_encoder_and_keeps_input_size():
    net = build_model("deeplabv3plus_mobilenetv2", 4, pretrained=True).eval()
    state = torch.load(find_mobilenet_weights(), map_location="cpu", weights_only=True)
    assert torch.equal(net.low[1].conv[0][0].weight, state["features.1.conv.0.0.weight"])
    assert torch.equal(net.high[0].conv[0][0].weight, state["features.4.conv.0.0.weight"])
    with torch.no_grad():
        assert net(torch.rand(1, 3, 40, 56)).shape == (1, 4, 40, 56)


def test_weights_with_a_wrong_sha256_are_refused(tmp_path):
    bad = tmp_path / MOBILENET_V2_FILE
    shutil.copy(find_mobilenet_weights(), bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ValueError, match="sha256"):
        build_model("deeplabv3plus_mobilenetv2", 3, pretrained=tmp_path)  # a folder holding the file


def test_missing_weights_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        build_model("deeplabv3plus_mobilenetv2", 3, pretrained=tmp_path / "nope.pth")


def test_lraspp_loads_the_imagenet_encoder_and_keeps_input_size():
    net = build_model("lraspp_mobilenetv2", 4, pretrained=True).eval()
    state = torch.load(find_mobilenet_weights(), map_location="cpu", weights_only=True)
    assert torch.equal(net.low[1].conv[0][0].weight, state["features.1.conv.0.0.weight"])
    assert torch.equal(net.high[-1].conv[1][0].weight, state["features.7.conv.1.0.weight"])
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 4, 32, 32)
        assert net(torch.rand(1, 3, 30, 45)).shape == (1, 4, 30, 45)  # padded to the stride, cropped back


def test_lraspp_deep_features_sit_at_output_stride_8():
    net = build_model("lraspp_mobilenetv2", 3).eval()
    assert net.stride == 8
    with torch.no_grad():
        low = net.low(torch.rand(1, 3, 64, 64))
        assert low.shape[-2:] == (16, 16)  # stride 4
        assert net.high(low).shape[-2:] == (8, 8)  # stride 8


def test_lraspp_random_init_differs_from_the_imagenet_weights():
    state = torch.load(find_mobilenet_weights(), map_location="cpu", weights_only=True)
    net = build_model("lraspp_mobilenetv2", 3, pretrained=None)
    assert not torch.equal(net.low[0][0].weight, state["features.0.0.weight"])
