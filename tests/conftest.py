"""Shared fixtures: random-weight model files in the released layout (written once per run), folders, ../shared."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from adain_nodes.host.paths import DEFAULT_DECODER
from adain_nodes.models.networks import RELEASED_VGG_MODULES, AdaINDecoder, SkipDecoder, VGGEncoder, vgg19_modules
from adain_nodes.models.weights import save_safetensors

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ADAIN_SHARED_DIR", REPO.parent / "shared"))

os.environ.setdefault("ADAIN_DEVICE", "cpu")

# CI replays the same examples every run (reproducible); HYPOTHESIS_PROFILE=explore searches anew.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# pytest-xdist runs one worker per core (pyproject's addopts): the cores are shared out, never oversubscribed.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


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


ENCODER_FILE = "vgg19_normalised_relu4_1.safetensors"
DECODER_FILES = ("decoder_baseline_relu4_1.safetensors", "adain_decoder_relu4_1.safetensors")


def random_skip_decoder(seed: int = 1) -> SkipDecoder:
    """The random relu4_1 decoder as the trunk, with skips small but not zero (so tests can see them)."""
    decoder = SkipDecoder()
    decoder.load_state_dict(random_decoder(seed).state_dict(), strict=False)
    torch.manual_seed(seed)
    for conv in decoder.skip.values():
        torch.nn.init.normal_(conv.weight, std=0.02)
    return decoder.eval()


def write_random_models(folder: Path, released_pth: bool = True) -> Path:
    """Random weights under the example file names (the decoder under both names the tests use), and the
    released 53-module ``vgg_normalised.pth`` (80 MB) unless ``released_pth`` is off."""
    folder.mkdir(parents=True, exist_ok=True)
    released = random_released_vgg()
    encoder = VGGEncoder()
    encoder.load_state_dict(released.state_dict(), strict=False)
    save_safetensors(encoder.state_dict(), folder / ENCODER_FILE, {"kind": "encoder"})
    decoder = random_decoder().state_dict()
    for name in DECODER_FILES:
        save_safetensors(decoder, folder / name, {"kind": "decoder"})
    save_safetensors(random_skip_decoder().state_dict(), folder / DEFAULT_DECODER, {"kind": "decoder"})
    if released_pth:
        torch.save(released.state_dict(), folder / "vgg_normalised.pth")
    return folder


@pytest.fixture(scope="session")
def session_models(tmp_path_factory) -> Path:
    """Written once per run: tests only read these files (``private_model_dir`` for tests that change them)."""
    return write_random_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def model_dir(session_models, tmp_path, monkeypatch) -> Path:
    """The models folder with random weights in ``ADAIN_MODELS_DIR``, and a fresh styles folder."""
    monkeypatch.setenv("ADAIN_MODELS_DIR", str(session_models))
    monkeypatch.setenv("ADAIN_STYLES_DIR", str(tmp_path / "styles"))
    return session_models


@pytest.fixture
def private_model_dir(session_models, tmp_path, monkeypatch) -> Path:
    """A models folder of this test's own, for tests that move, add or replace files. Its files are hard links
    to the session's: replace a file (unlink first), never write into one."""
    models = tmp_path / "models"
    models.mkdir()
    for file in session_models.iterdir():
        os.link(file, models / file.name)
    monkeypatch.setenv("ADAIN_MODELS_DIR", str(models))
    monkeypatch.setenv("ADAIN_STYLES_DIR", str(tmp_path / "styles"))
    return models


@pytest.fixture
def encoder(model_dir):
    """Loaded through the node, in fp32: tests compare against exact references (bf16 has its own tests)."""
    from adain_nodes.nodes.loaders import AdaINEncoderLoader
    return AdaINEncoderLoader().load(ENCODER_FILE, "fp32")[0]


@pytest.fixture
def decoder(model_dir):
    from adain_nodes.nodes.loaders import AdaINDecoderLoader
    return AdaINDecoderLoader().load(DECODER_FILES[0], "fp32")[0]


def random_image(batch: int = 1, height: int = 32, width: int = 32, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """A host IMAGE [B, H, W, C] with smooth structure (pure noise makes degenerate statistics)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, channels, max(height // 4, 1), max(width // 4, 1), generator=g)
    image = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    image = (image + 0.1 * torch.rand(batch, channels, height, width, generator=g)).clamp(0, 1)
    return image.permute(0, 2, 3, 1).contiguous()
