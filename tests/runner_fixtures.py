"""Random-weight model files written once per test module (the runner tests run many small workflows)."""
from __future__ import annotations

from pathlib import Path

import pytest

from adain_nodes.models.networks import VGGEncoder
from adain_nodes.models.weights import save_safetensors

ENCODER_FILE = "vgg19_normalised_relu4_1.safetensors"
DECODER_FILE = "adain_decoder_relu4_1.safetensors"


def write_random_models(folder: Path) -> Path:
    from conftest import random_decoder, random_released_vgg

    folder.mkdir(parents=True, exist_ok=True)
    encoder = VGGEncoder()
    encoder.load_state_dict(random_released_vgg().state_dict(), strict=False)
    save_safetensors(encoder.state_dict(), folder / ENCODER_FILE, {"kind": "encoder"})
    save_safetensors(random_decoder().state_dict(), folder / DECODER_FILE, {"kind": "decoder"})
    return folder


@pytest.fixture(scope="module")
def module_models(tmp_path_factory) -> Path:
    return write_random_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def model_dir(module_models, tmp_path, monkeypatch) -> Path:
    """Overrides conftest's per-test fixture: same env, models shared by the module, fresh styles dir."""
    monkeypatch.setenv("ADAIN_MODELS_DIR", str(module_models))
    monkeypatch.setenv("ADAIN_STYLES_DIR", str(tmp_path / "styles"))
    return module_models
