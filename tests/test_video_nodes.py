"""The headless runner's core video nodes (ComfyUI's Load Video ... Save Video) through PyAV."""
from __future__ import annotations

import json
from fractions import Fraction

import av
import pytest
import torch
from conftest import random_image

from adain_nodes.runner import Folders
from adain_nodes.runner.registry import Registry


@pytest.fixture
def nodes(tmp_path):
    folders = Folders(tmp_path / "in", tmp_path / "out")
    folders.input_dir.mkdir()
    return folders, Registry(folders).classes


def _audio(seconds: float, rate: int = 16000) -> dict:
    t = torch.arange(int(rate * seconds)) / rate
    return {"waveform": (0.2 * torch.sin(2 * torch.pi * 330 * t))[None, None].repeat(1, 2, 1), "sample_rate": rate}


def test_create_save_load_round_trip(nodes):
    """Frames, frame rate and audio survive Create Video -> Save Video -> Load Video -> Get Video Components; the
    workflow and prompt go into the container's tags, as ComfyUI writes them."""
    folders, classes = nodes
    torch.manual_seed(3)  # smooth frames: H.264's chroma subsampling blurs pixel noise away
    frames = torch.nn.functional.interpolate(torch.rand(5, 3, 6, 8), size=(48, 64), mode="bilinear").permute(0, 2, 3, 1)
    (video,) = classes["CreateVideo"]().create(frames, 10.0, _audio(0.5))
    prompt, workflow = {"1": {"class_type": "SaveVideo"}}, {"nodes": []}
    result = classes["SaveVideo"]().save(video, "clips/test", "auto", prompt=prompt,
                                         extra_pnginfo={"workflow": workflow}, **{"format.codec": "auto"})
    path = folders.output_dir / "clips" / "test_00001_.mp4"
    assert result["ui"]["images"][0]["filename"] == path.name and path.is_file()
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert json.loads(container.metadata["prompt"]) == prompt
        assert json.loads(container.metadata["workflow"]) == workflow
    path.rename(folders.input_dir / "clip.mp4")
    assert classes["LoadVideo"].VALIDATE_INPUTS("clip.mp4") is True
    assert "Invalid video file" in classes["LoadVideo"].VALIDATE_INPUTS("missing.mp4")
    (loaded,) = classes["LoadVideo"]().load("clip.mp4")
    images, audio, fps, depth, space = classes["GetVideoComponents"]().split(loaded)
    assert images.shape == frames.shape and fps == 10.0 and depth == 8 and space == "sRGB"
    assert float((images - frames).abs().mean()) < 0.03  # H.264 at its default quality
    assert audio["sample_rate"] == 16000 and audio["waveform"].shape[1] == 2
    assert abs(audio["waveform"].shape[-1] - 8000) < 2048  # AAC pads by up to a frame or two


def test_second_save_takes_the_next_counter(nodes):
    folders, classes = nodes
    (video,) = classes["CreateVideo"]().create(random_image(2, 32, 32), 8.0)
    for _ in range(2):
        classes["SaveVideo"]().save(video, "v", "mp4")
    assert sorted(p.name for p in folders.output_dir.iterdir()) == ["v_00001_.mp4", "v_00002_.mp4"]


def test_what_headless_does_not_write_is_refused(nodes):
    _, classes = nodes
    (video,) = classes["CreateVideo"]().create(random_image(2, 32, 32), 8.0)
    with pytest.raises(ValueError, match="H.264 in MP4 or MKV"):
        classes["SaveVideo"]().save(video, "v", "webm")
    (deep,) = classes["CreateVideo"]().create(random_image(2, 32, 32), 8.0, bit_depth=10)
    with pytest.raises(ValueError, match="8-bit"):
        classes["SaveVideo"]().save(deep, "v", "auto")
    assert Fraction(video.frame_rate) == 8
