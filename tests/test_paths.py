"""File names from workflows stay in their folders; user links keep working; writes are atomic.

Covers the model loaders, style presets and the runner's LoadImage/SaveImage. (The loaders' basic
'../' cases are in test_nodes.py.)
"""
from __future__ import annotations

import ntpath
import os
import posixpath
import stat
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from adain_nodes.errors import AdaINInputError
from adain_nodes.host.paths import MODELS_FOLDER, check_relative_name, list_files
from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
from adain_nodes.pipeline import AdaINStyle
from adain_nodes.runner.core_nodes import Folders, make_core_nodes

ESCAPES = ["../x.safetensors", "a/../../x.safetensors", "..", "../", "/etc/passwd", "//server/share/x.safetensors",
           "\\\\server\\share\\x.safetensors", "C:\\x.safetensors", "C:x.safetensors", "c:/x.safetensors",
           "sub\\..\\..\\x.safetensors", "", "   ", "..\\x.safetensors"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=["a", ".", "/", "\\", ":", "C", " ", "~"], max_size=10))
def test_accepted_names_stay_inside_on_posix_and_windows(name):
    try:
        posix = check_relative_name(name, "test")
    except AdaINInputError:
        return
    joined = posixpath.normpath(posixpath.join("/base/dir", posix))
    assert joined == "/base/dir" or joined.startswith("/base/dir/"), joined  # '.' is the folder itself
    joined = ntpath.normpath(ntpath.join("C:\\base\\dir", name)).lower()
    assert joined == "c:\\base\\dir" or joined.startswith("c:\\base\\dir\\"), joined


def _style() -> AdaINStyle:
    return AdaINStyle({"relu4_1": (torch.rand(1, 512), torch.rand(1, 512) + 0.5)}, "0123456789abcdef",
                      "enc.safetensors")


@pytest.mark.parametrize("name", ESCAPES)
def test_every_file_input_refuses_escaping_names(name, model_dir, tmp_path):
    for call in (lambda: N["AdaINEncoderLoader"]().load(name),
                 lambda: N["AdaINLoadStyle"]().load(name)):
        with pytest.raises(AdaINInputError, match="inside the folder|empty"):
            call()
    if name.strip() and name != "..":  # empty has its own message; '..' becomes the plain file '...safetensors'
        with pytest.raises(AdaINInputError, match="inside the folder"):
            N["AdaINSaveStyle"]().save(_style(), name)
    assert not list(tmp_path.glob("*.safetensors"))


def _user_links(model_dir, tmp_path):
    """Move the decoder out and link it back as a file; move the encoder into a folder linked in."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "shared_models").mkdir(parents=True)
    os.replace(model_dir / "decoder_baseline_relu4_1.safetensors", elsewhere / "dec.safetensors")
    os.replace(model_dir / "vgg19_normalised_relu4_1.safetensors",
               elsewhere / "shared_models" / "vgg19_normalised_relu4_1.safetensors")
    (model_dir / "linked_decoder.safetensors").symlink_to(elsewhere / "dec.safetensors")
    (model_dir / "linked").symlink_to(elsewhere / "shared_models", target_is_directory=True)


def test_symlinked_file_and_folder_in_models_dir_are_listed_and_load(private_model_dir, tmp_path):
    _user_links(private_model_dir, tmp_path)
    files = list_files(MODELS_FOLDER)
    assert "linked_decoder.safetensors" in files and "linked/vgg19_normalised_relu4_1.safetensors" in files
    choices = N["AdaINEncoderLoader"].INPUT_TYPES()["required"]["encoder_name"][0]
    assert "linked/vgg19_normalised_relu4_1.safetensors" in choices
    encoder = N["AdaINEncoderLoader"]().load("linked/vgg19_normalised_relu4_1.safetensors")[0]
    decoder = N["AdaINDecoderLoader"]().load("linked_decoder.safetensors")[0]
    assert encoder.name == "vgg19_normalised_relu4_1.safetensors" and decoder.name == "linked_decoder.safetensors"
    # the linked target is reachable through the link only, never by climbing out of the folder
    with pytest.raises(AdaINInputError, match="inside the folder"):
        N["AdaINDecoderLoader"]().load("../elsewhere/dec.safetensors")


def test_link_loops_in_models_dir_do_not_hang_listing(private_model_dir):
    """Two folders linked into themselves used to make the walk exponential (a hang)."""
    model_dir = private_model_dir
    (model_dir / "loop_a").symlink_to(model_dir, target_is_directory=True)
    (model_dir / "loop_b").symlink_to(model_dir, target_is_directory=True)
    (model_dir / "broken.safetensors").symlink_to(model_dir / "absent.safetensors")
    files = list_files(MODELS_FOLDER)
    assert not any(f.startswith("loop_") for f in files)
    assert "vgg19_normalised_relu4_1.safetensors" in files
    with pytest.raises(AdaINInputError, match="not found"):
        N["AdaINDecoderLoader"]().load("broken.safetensors")


def test_symlinked_style_folder_is_listed_and_loads(model_dir, tmp_path):
    styles, elsewhere = tmp_path / "styles", tmp_path / "team_styles"
    styles.mkdir(exist_ok=True)
    elsewhere.mkdir()
    (styles / "team").symlink_to(elsewhere, target_is_directory=True)
    style = _style()
    N["AdaINSaveStyle"]().save(style, "team/calm")  # written through the link
    assert (elsewhere / "calm.safetensors").is_file()
    assert "team/calm.safetensors" in N["AdaINLoadStyle"].INPUT_TYPES()["required"]["preset"][0]
    assert torch.equal(N["AdaINLoadStyle"]().load("team/calm.safetensors")[0].mean, style.mean)


def _fake_comfyui_folders(monkeypatch, root) -> None:
    """Just enough of ComfyUI's folder_paths (and the module whose presence means 'inside ComfyUI')."""
    import types

    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(root / "models")
    fp.folder_names_and_paths = {}
    fp.add_model_folder_path = lambda name, path: fp.folder_names_and_paths[name][0].append(path)
    fp.get_folder_paths = lambda name: fp.folder_names_and_paths[name][0]
    fp.get_full_path = lambda name, file: None
    fp.get_filename_list = lambda name: []
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    monkeypatch.setitem(sys.modules, "comfy.model_management", types.ModuleType("comfy.model_management"))


def test_missing_preset_names_the_styles_folder_and_how_to_fix_it(model_dir, tmp_path, monkeypatch):
    load = N["AdaINLoadStyle"]
    message = load.VALIDATE_INPUTS("gone.safetensors")
    assert "'gone.safetensors' was not found" in message and str(tmp_path / "styles") in message
    assert "--styles-dir" in message and "ADAIN_STYLES_DIR" in message and "AdaIN Save Style" in message
    with pytest.raises(AdaINInputError) as error:
        load().load("gone.safetensors")
    assert str(error.value) == message
    assert "not a path that leaves it" in load.VALIDATE_INPUTS("../x.safetensors")

    _fake_comfyui_folders(monkeypatch, tmp_path / "ComfyUI")  # inside ComfyUI: its models folder, no CLI flags
    message = load.VALIDATE_INPUTS("gone.safetensors")
    assert str(tmp_path / "ComfyUI" / "models" / "adain_styles") in message and "--styles-dir" not in message
    assert "models/adain_styles" in message and "AdaIN Save Style" in message


def test_comfyui_model_folders_are_created_on_first_start(tmp_path, monkeypatch):
    from adain_nodes.host.paths import register_folders

    _fake_comfyui_folders(monkeypatch, tmp_path / "ComfyUI")
    register_folders()
    assert (tmp_path / "ComfyUI" / "models" / "adain").is_dir()
    assert (tmp_path / "ComfyUI" / "models" / "adain_styles").is_dir()


def test_missing_model_says_where_to_put_it(model_dir, tmp_path, monkeypatch):
    with pytest.raises(AdaINInputError) as error:
        N["AdaINDecoderLoader"]().load("gone.safetensors")
    assert str(model_dir) in str(error.value) and "--models-dir" in str(error.value)
    _fake_comfyui_folders(monkeypatch, tmp_path / "ComfyUI")
    with pytest.raises(AdaINInputError) as error:
        N["AdaINDecoderLoader"]().load("gone.safetensors")
    assert "models/adain" in str(error.value) and "--models-dir" not in str(error.value)


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "input").mkdir()
    (tmp_path / "outside").mkdir()
    Image.new("RGB", (5, 3), (10, 20, 30)).save(tmp_path / "outside" / "photo.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "input" / "own.png")
    return Folders(tmp_path / "input", tmp_path / "output")


def test_load_image_refuses_escapes_but_follows_user_links(folders, tmp_path):
    load = make_core_nodes(folders)["LoadImage"]
    (folders.input_dir / "linked.png").symlink_to(tmp_path / "outside" / "photo.png")
    (folders.input_dir / "album").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert "linked.png" in folders.input_files()  # listed, so it must also validate and load
    for name in ("linked.png", "album/photo.png", "own.png", "own.png [input]"):
        assert load.VALIDATE_INPUTS(name) is True, name
        assert load().load_image(name)[0].shape[1:3] in ((3, 5), (4, 4))
    for name in ("../outside/photo.png", str(tmp_path / "outside" / "photo.png"), "album/../../outside/photo.png",
                 "../outside/photo.png [output]", "../input/own.png [temp]"):
        assert load.VALIDATE_INPUTS(name).startswith(f"Invalid image file: {name} (")  # ComfyUI's words first
        with pytest.raises(ValueError, match="Invalid file path"):
            load().load_image(name)


def test_save_image_prefix_cannot_escape_but_linked_subfolder_works(folders, tmp_path):
    save = make_core_nodes(folders)["SaveImage"]
    image = torch.rand(1, 4, 6, 3)
    for prefix in ("../escape", str(tmp_path / "abs"), "sub/../../escape"):
        with pytest.raises(ValueError, match="outside the output folder"):
            save().save_images(image, prefix)
    folders.output_dir.mkdir()
    (folders.output_dir / "shared").symlink_to(tmp_path / "outside", target_is_directory=True)
    result = save().save_images(image, "shared/run")
    assert (tmp_path / "outside" / result["ui"]["images"][0]["filename"]).is_file()
    assert not list(tmp_path.glob("escape*")) and not (tmp_path / "abs_00001_.png").exists()


# --- atomic writes: an existing file is never half-overwritten, a failed write leaves nothing -------------

def _failing_png_save(monkeypatch):
    """Make PNG encoding write some bytes and then fail, like a full disk."""
    from PIL import PngImagePlugin

    def broken(im, fp, filename, chunk=None, save_all=False):
        fp.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PngImagePlugin, "_save", broken)
    monkeypatch.setitem(Image.SAVE, "PNG", broken)


def test_save_image_is_atomic(folders, monkeypatch):
    import adain_nodes.runner.core_nodes as core

    save = make_core_nodes(folders)["SaveImage"]
    first = save().save_images(torch.rand(1, 4, 4, 3), "run")["ui"]["images"][0]
    target = folders.output_dir / first["filename"]
    before = target.read_bytes()
    assert Image.open(target).size == (4, 4)
    # a normal new file's permissions, not a temporary file's private 0600
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    monkeypatch.setattr(core, "_save_counter", lambda folder, filename: 1)  # aim at the existing file
    _failing_png_save(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        save().save_images(torch.rand(1, 4, 4, 3), "run")
    with pytest.raises(OSError, match="No space"):
        save().save_images(torch.rand(1, 4, 4, 3), "fresh")
    assert target.read_bytes() == before
    assert sorted(p.name for p in folders.output_dir.iterdir()) == [first["filename"]]


def test_style_preset_overwrite_is_atomic(model_dir, tmp_path, monkeypatch):
    import adain_nodes.models.weights as weights

    N["AdaINSaveStyle"]().save(_style(), "keep")
    path = tmp_path / "styles" / "keep.safetensors"
    before = path.read_bytes()

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weights, "save_file", broken)
    with pytest.raises(OSError, match="No space"):
        N["AdaINSaveStyle"]().save(_style(), "keep", overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["keep.safetensors"]
