"""Weight files are judged by what they declare before their data is read; only floating-point weights load."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from adain_nodes.errors import WeightFileError
from adain_nodes.models.networks import AdaINDecoder
from adain_nodes.models.weights import load_decoder, load_encoder
from adain_nodes.presets import load_style
from conftest import random_decoder

REPO = Path(__file__).resolve().parents[1]
KEY = "1.weight"  # the decoder's first conv


@pytest.fixture(scope="module")
def decoder_state() -> dict[str, torch.Tensor]:
    return random_decoder().state_dict()


def _write(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    else:
        torch.save(tensors, path)
    return path


FLOATS = [torch.float64, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2]


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_floating_point_weights_of_any_width_load_as_float32(tmp_path, decoder_state, dtype, suffix):
    stored = {k: v.to(dtype) for k, v in decoder_state.items()}
    decoder = load_decoder(_write(tmp_path / f"d{suffix}", stored))
    for key, value in decoder.network.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, stored[key].to(torch.float32)), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool, torch.complex64],
                         ids=str)
def test_integer_boolean_and_complex_weights_are_refused_naming_tensor_and_dtype(tmp_path, decoder_state, dtype,
                                                                                  suffix):
    stored = dict(decoder_state)
    stored[KEY] = (stored[KEY] * 100).to(dtype)
    with pytest.raises(WeightFileError, match=rf"{KEY} \(\w*{str(dtype).split('.')[-1][:3]}\w*\).*not floating"):
        load_decoder(_write(tmp_path / f"d{suffix}", stored))


def test_integer_style_preset_is_refused(tmp_path):
    path = tmp_path / "style.safetensors"
    save_file({"mean": torch.ones(1, 8, dtype=torch.int32), "std": torch.ones(1, 8)}, str(path),
              metadata={"format": "adain-style", "encoder_id": "x", "layer": "relu4_1"})
    with pytest.raises(WeightFileError, match=r"mean \(int32\)"):
        load_style(path)


def _compressed_pth(path: Path, values: int) -> Path:
    """A .pth whose one (mis-shaped) tensor declares ``values`` float32s but compresses to almost nothing."""
    plain = path.with_suffix(".plain")
    torch.save({KEY: torch.zeros(values)}, plain)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for record in source.infolist():
            with source.open(record) as src, target.open(record.filename, "w", force_zip64=True) as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
    plain.unlink()
    return path


def _sparse_safetensors(path: Path, values: int) -> Path:
    """A valid safetensors file declaring ``values`` float32s of an extra tensor, sparse on disk."""
    header = {KEY: {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + 4 * values)
    return path


PEAK_MEMORY = """
import sys
from adain_nodes.errors import WeightFileError
from adain_nodes.models.weights import load_decoder

def peak():  # VmHWM, the resident high-water mark, in bytes
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the high-water mark to the current use
before = peak()
try:
    load_decoder(sys.argv[1])
except WeightFileError as exc:
    print(exc, file=sys.stderr)
print(peak() - before)
"""


@pytest.mark.parametrize("make", [_compressed_pth, _sparse_safetensors], ids=["compressed_pth", "sparse_safetensors"])
def test_a_small_file_declaring_huge_tensors_is_refused_before_memory_is_taken(tmp_path, make):
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("measures peak memory through Linux's /proc")
    values = 48 << 20  # 192 MB declared; the decoder needs 14 MB
    path = make(tmp_path / ("big.pth" if make is _compressed_pth else "big.safetensors"), values)
    assert path.stat().st_blocks * 512 < 8 << 20
    proc = subprocess.run([sys.executable, "-c", PEAK_MEMORY, str(path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "refused" in proc.stderr or "does not fit" in proc.stderr, proc.stderr
    assert int(proc.stdout.split()[-1]) < 64 << 20, "the loader took the declared memory before refusing the file"


def test_encoder_file_with_released_extra_layers_still_loads_from_a_compressed_pth(tmp_path):
    """Compression alone is not refused: only declared sizes beyond what the network can need."""
    from conftest import random_released_vgg

    plain = tmp_path / "vgg.pth"
    torch.save(random_released_vgg().state_dict(), plain)
    packed = tmp_path / "packed.pth"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target:
        for record in source.infolist():
            target.writestr(record.filename, source.read(record))
    assert torch.equal(load_encoder(packed).network.state_dict()["0.weight"],
                       load_encoder(plain).network.state_dict()["0.weight"])


def test_decoder_layout_is_unchanged():
    assert tuple(AdaINDecoder().state_dict()[KEY].shape) == (256, 512, 3, 3)
