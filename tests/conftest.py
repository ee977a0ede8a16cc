"""Shared fixtures: random-weight model files in the released layout, temporary model folders, ../shared."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from adain_nodes.models.networks import RELEASED_VGG_MODULES, AdaINDecoder, VGGEncoder, vgg19_modules
from adain_nodes.models.weights import save_safetensors

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ADAIN_SHARED_DIR", REPO.parent / "shared"))

os.environ.setdefault("ADAIN_DEVICE", "cpu")

# CI replays the same examples every run (reproducible); HYPOTHESIS_PROFILE=explore searches anew.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


def shared_path(*parts: str) -> Path:
    """A file of ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests need the project's ../shared assets (set ADAIN_SHARED_DIR)")
    return path


def he_init(network: torch.nn.Module, seed: int, image_output: bool = False) -> torch.nn.Module:
    """He-initialise convs so activations keep their scale through the depth (PyTorch's default init
    shrinks them a hundredfold, which would hide errors below any tolerance). With ``image_output``
    the last conv is scaled to give values around 0.5 +- 0.25, mostly inside 0..1."""
    torch.manual_seed(seed)
    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        torch.nn.init.uniform_(conv.bias, -0.1, 0.1)
    if image_output:
        convs[-1].weight.data.mul_(0.2)
        convs[-1].bias.data.fill_(0.5)
    return network.eval()


def random_decoder(seed: int = 1) -> AdaINDecoder:
    return he_init(AdaINDecoder(), seed, image_output=True)


def random_released_vgg(seed: int = 0) -> torch.nn.Sequential:
    return he_init(torch.nn.Sequential(*vgg19_modules(RELEASED_VGG_MODULES)), seed)


@pytest.fixture
def model_dir(tmp_path, monkeypatch) -> Path:
    """A models folder with random weights under the example file names, plus a styles folder."""
    models = tmp_path / "models"
    models.mkdir()
    encoder = VGGEncoder()
    encoder.load_state_dict(random_released_vgg().state_dict(), strict=False)
    save_safetensors(encoder.state_dict(), models / "vgg19_normalised_relu4_1.safetensors", {"kind": "encoder"})
    save_safetensors(random_decoder().state_dict(), models / "decoder_baseline_relu4_1.safetensors", {"kind": "decoder"})
    torch.save(random_released_vgg().state_dict(), models / "vgg_normalised.pth")
    monkeypatch.setenv("ADAIN_MODELS_DIR", str(models))
    monkeypatch.setenv("ADAIN_STYLES_DIR", str(tmp_path / "styles"))
    return models


@pytest.fixture
def encoder(model_dir):
    from adain_nodes.nodes.loaders import AdaINEncoderLoader
    return AdaINEncoderLoader().load("vgg19_normalised_relu4_1.safetensors")[0]


@pytest.fixture
def decoder(model_dir):
    from adain_nodes.nodes.loaders import AdaINDecoderLoader
    return AdaINDecoderLoader().load("decoder_baseline_relu4_1.safetensors")[0]


def random_image(batch: int = 1, height: int = 32, width: int = 32, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """A host IMAGE [B, H, W, C] with smooth structure (pure noise makes degenerate statistics)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, channels, max(height // 4, 1), max(width // 4, 1), generator=g)
    image = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    image = (image + 0.1 * torch.rand(batch, channels, height, width, generator=g)).clamp(0, 1)
    return image.permute(0, 2, 3, 1).contiguous()
