"""Weight files: strict layout checks, safe legacy loading, conversion, atomic writes."""
from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from adain_nodes.errors import WeightFileError
from adain_nodes.models.networks import AdaINDecoder, VGGEncoder
from adain_nodes.models.weights import (convert_to_safetensors, load_decoder, load_encoder, read_tensors,
                                        save_safetensors, weights_identity)
from conftest import random_decoder, random_released_vgg


def test_released_53_module_vgg_loads_and_converts(tmp_path):
    torch.save(random_released_vgg().state_dict(), tmp_path / "vgg_normalised.pth",
               _use_new_zipfile_serialization=False)
    encoder = load_encoder(tmp_path / "vgg_normalised.pth")
    assert convert_to_safetensors(tmp_path / "vgg_normalised.pth", tmp_path / "vgg.safetensors") == "encoder"
    tensors, meta = read_tensors(tmp_path / "vgg.safetensors")
    assert set(tensors) == set(VGGEncoder().state_dict())  # truncated to relu4_1
    assert meta["kind"] == "encoder" and len(meta["source_sha256"]) == 64
    assert load_encoder(tmp_path / "vgg.safetensors").identity == encoder.identity


def test_decoder_conversion_roundtrip(tmp_path):
    torch.save(random_decoder().state_dict(), tmp_path / "decoder.pth")
    assert convert_to_safetensors(tmp_path / "decoder.pth", tmp_path / "decoder.safetensors") == "decoder"
    assert load_decoder(tmp_path / "decoder.safetensors").identity == load_decoder(tmp_path / "decoder.pth").identity


def test_layout_errors_name_the_keys(tmp_path):
    state = random_decoder().state_dict()
    state["5.weight"] = torch.zeros(256, 256, 1, 1)
    del state["28.bias"]
    state["99.weight"] = torch.zeros(1)
    save_safetensors(state, tmp_path / "bad.safetensors", {})
    with pytest.raises(WeightFileError) as info:
        load_decoder(tmp_path / "bad.safetensors")
    message = str(info.value)
    assert "bad.safetensors" in message and "28.bias" in message and "99.weight" in message
    assert "5.weight: file (256, 256, 1, 1) vs network (256, 256, 3, 3)" in message


def test_extra_keys_beyond_released_vgg_are_refused(tmp_path):
    state = random_released_vgg().state_dict()
    state["60.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "vgg.pth")
    with pytest.raises(WeightFileError, match="60.weight"):
        load_encoder(tmp_path / "vgg.pth")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"0.weight": _RunsCode(str(marker))}, f)
    torch.save({"x": _RunsCode(str(marker))}, tmp_path / "evil_zip.pth")
    assert not marker.exists()  # pickling only records the call; unpickling would make the file
    for name in ("evil.pth", "evil_zip.pth"):
        with pytest.raises(WeightFileError, match="refused"):
            load_decoder(tmp_path / name)
    assert not marker.exists()


def test_truncated_files_are_refused(tmp_path):
    save_safetensors(random_decoder().state_dict(), tmp_path / "d.safetensors", {})
    torch.save(random_decoder().state_dict(), tmp_path / "d.pth")
    for name in ("d.safetensors", "d.pth"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(WeightFileError, match=f"cut_{name}"):
            load_decoder(tmp_path / f"cut_{name}")


def test_safetensors_header_that_lies_about_sizes(tmp_path):
    header = {"1.weight": {"dtype": "F32", "shape": [256, 512, 3, 3], "data_offsets": [0, 10_000_000_000]}}
    blob = json.dumps(header).encode()
    (tmp_path / "liar.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * 64)
    with pytest.raises(WeightFileError, match="liar.safetensors"):
        load_decoder(tmp_path / "liar.safetensors")


def test_non_finite_weights_are_refused(tmp_path):
    state = random_decoder().state_dict()
    state["14.weight"][0, 0, 0, 0] = float("nan")
    save_safetensors(state, tmp_path / "nan.safetensors", {})
    with pytest.raises(WeightFileError, match="14.weight"):
        load_decoder(tmp_path / "nan.safetensors")


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(WeightFileError, match="unsupported"):
        load_decoder(tmp_path / "model.onnx")
    with pytest.raises(WeightFileError, match="no such"):
        load_decoder(tmp_path / "absent.safetensors")


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "d.safetensors"
    save_safetensors(random_decoder().state_dict(), target, {"v": "1"})
    before = target.read_bytes()
    with pytest.raises(Exception):
        save_safetensors({"bad": object()}, target, {"v": "2"})  # fails while writing
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.safetensors"]


def test_identity_depends_on_weights_only():
    a, b = AdaINDecoder(), AdaINDecoder()
    b.load_state_dict(a.state_dict())
    assert weights_identity(a) == weights_identity(b)
    b[1].bias.data[0] += 1
    assert weights_identity(a) != weights_identity(b)


def test_saved_safetensors_get_normal_permissions(tmp_path):
    """safetensors writes through its own private temporary file; the result must still be readable by others."""
    import os
    import stat
    umask = os.umask(0)
    os.umask(umask)
    save_safetensors(random_decoder().state_dict(), tmp_path / "d.safetensors", {})
    assert stat.S_IMODE((tmp_path / "d.safetensors").stat().st_mode) == 0o666 & ~umask
