"""ComfyRuntime, the adapter to ComfyUI's model management, progress bar and interrupt flag.

Against a recording stand-in of ComfyUI's modules (what ComfyUI 0.33's functions do, reduced to what the adapter
touches, each call recorded), driven through the pack's nodes as ComfyUI runs them; and against the real ComfyUI
in its own Python where it is installed (``COMFY_HOME``, default /opt/comfy).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from adain_nodes.host import get_runtime
from adain_nodes.host.paths import DEFAULT_DECODER
from adain_nodes.host.runtime import ComfyRuntime, StandaloneRuntime
from adain_nodes.models.networks import SkipDecoder, VGGEncoder
from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
from conftest import ENCODER_FILE, random_image

REPO = Path(__file__).resolve().parents[1]
COMFY_HOME = Path(os.environ.get("COMFY_HOME", "/opt/comfy"))
COMPUTE, OFFLOAD = torch.device("cpu"), torch.device("cpu", 0)  # told apart: the offload device is not the compute one


class InterruptProcessingException(BaseException):
    """ComfyUI's: a BaseException, so no ``except Exception`` of a node swallows the user's Cancel."""


class StandIn:
    """``comfy.model_management``, ``comfy.utils`` and ``comfy.model_patcher`` as modules that behave like
    ComfyUI's where the adapter uses them and record every call in ``calls`` (name, arguments)."""

    def __init__(self, free_bytes: int = 1 << 34) -> None:
        self.calls: list[tuple] = []
        self.free_bytes = free_bytes
        self.interrupt_at: int | None = None  # the interrupt button, pressed before this check (1-based)
        self.checks = 0
        self.loaded: list = []  # ComfyUI's current_loaded_models
        standin = self

        mm = types.ModuleType("comfy.model_management")
        mm.InterruptProcessingException = InterruptProcessingException
        mm.OOM_EXCEPTION = torch.OutOfMemoryError

        def record(name, *args, **kwargs):
            standin.calls.append((name, args, kwargs))

        def get_torch_device():
            record("get_torch_device")
            return COMPUTE

        def unet_offload_device():
            record("unet_offload_device")
            return OFFLOAD

        def intermediate_device():
            record("intermediate_device")
            return torch.device("cpu")

        def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                            force_full_load=False):
            record("load_models_gpu", list(models), memory_required=memory_required, force_full_load=force_full_load)
            for patcher in models:  # as ComfyUI: the patched model goes to its load device and is kept in the list
                patcher.model.to(patcher.load_device)
                if patcher not in standin.loaded:
                    standin.loaded.append(patcher)

        def get_free_memory(dev=None, torch_free_too=False):
            record("get_free_memory", dev)
            return standin.free_bytes

        def throw_exception_if_processing_interrupted():
            standin.checks += 1
            record("throw_exception_if_processing_interrupted")
            if standin.interrupt_at is not None and standin.checks >= standin.interrupt_at:
                standin.interrupt_at = None  # ComfyUI clears the flag when it raises
                raise InterruptProcessingException()

        def is_oom(e):
            record("is_oom", e)
            return isinstance(e, torch.OutOfMemoryError)

        def soft_empty_cache(force=False):
            record("soft_empty_cache")

        for function in (get_torch_device, unet_offload_device, intermediate_device, load_models_gpu, get_free_memory,
                         throw_exception_if_processing_interrupted, is_oom, soft_empty_cache):
            setattr(mm, function.__name__, function)

        utils = types.ModuleType("comfy.utils")

        class ProgressBar:
            def __init__(self, total, node_id=None):
                record("ProgressBar", total)
                self.total = total

            def update_absolute(self, value, total=None, preview=None):
                record("update_absolute", value, total)

        utils.ProgressBar = ProgressBar

        patcher_module = types.ModuleType("comfy.model_patcher")

        class ModelPatcher:
            def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
                record("ModelPatcher", model, load_device=load_device, offload_device=offload_device)
                self.model, self.load_device, self.offload_device = model, load_device, offload_device

        patcher_module.ModelPatcher = ModelPatcher
        comfy = types.ModuleType("comfy")
        comfy.model_management, comfy.utils, comfy.model_patcher = mm, utils, patcher_module
        self.modules = {"comfy": comfy, "comfy.model_management": mm, "comfy.utils": utils,
                        "comfy.model_patcher": patcher_module, "folder_paths": types.ModuleType("folder_paths")}

    def named(self, name: str) -> list[tuple]:
        return [call for call in self.calls if call[0] == name]


@pytest.fixture
def models(model_dir):
    """Encoder and the default (skip) decoder, loaded before the stand-in is installed; copies, so a patcher
    made here never sticks to the loader's cached model."""
    encoder = N["AdaINEncoderLoader"]().load(ENCODER_FILE, "fp32")[0]
    decoder = N["AdaINDecoderLoader"]().load(DEFAULT_DECODER, "fp32")[0]
    return dataclasses.replace(encoder, patcher=None), dataclasses.replace(decoder, patcher=None)


@pytest.fixture
def comfy(models, monkeypatch) -> StandIn:
    standin = StandIn()
    for name, module in standin.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return standin


def _transfer(models, content, style):
    encoder, decoder = models
    return N["AdaINStyleTransfer"]().transfer(encoder, decoder, content, style, 1.0)[0]


def test_inside_comfyui_the_nodes_use_comfyui(comfy):
    assert isinstance(get_runtime(), ComfyRuntime)


def test_models_are_loaded_by_comfyui_once_wrapped(models, comfy):
    """Each network is wrapped in one ModelPatcher (load device ComfyUI's torch device, offload device its
    offload device), reused by later runs, and loaded through load_models_gpu with the working memory the
    chunk needs; the result is the standalone runtime's."""
    encoder, decoder = models
    content, style = random_image(2, 40, 48, seed=1), random_image(1, 32, 32, seed=2)
    first = _transfer(models, content, style)
    patchers = comfy.named("ModelPatcher")
    assert [call[1][0] for call in patchers] == [encoder.network, decoder.network]
    assert all(call[2] == {"load_device": COMPUTE, "offload_device": OFFLOAD} for call in patchers)
    assert isinstance(encoder.network, VGGEncoder) and isinstance(decoder.network, SkipDecoder)
    loads = comfy.named("load_models_gpu")
    assert {id(call[1][0][0]) for call in loads} == {id(encoder.patcher), id(decoder.patcher)}
    assert all(call[2]["force_full_load"] is True and 0 < call[2]["memory_required"] <= comfy.free_bytes
               for call in loads)
    assert comfy.loaded == [encoder.patcher, decoder.patcher]
    assert all(call[1] == (COMPUTE,) for call in comfy.named("get_free_memory"))

    second = _transfer(models, content, style)
    assert len(comfy.named("ModelPatcher")) == 2  # no new wrapper: ComfyUI keeps managing the same model
    assert torch.equal(first, second)
    sys.modules.pop("comfy.model_management")  # outside ComfyUI again: the standalone runtime's result
    assert isinstance(get_runtime(), StandaloneRuntime)
    assert torch.equal(first, _transfer(models, content, style))


def test_progress_goes_to_comfyuis_bar(models, comfy):
    """Every bar is created with its total and ends full; updates never go backwards."""
    _transfer(models, random_image(3, 32, 40), random_image(1, 32, 32))
    totals = [call[1][0] for call in comfy.named("ProgressBar")]
    assert totals and all(total >= 1 for total in totals)
    updates = comfy.named("update_absolute")
    for total in totals:
        values = [call[1][0] for call in updates if call[1][1] == total]
        assert values == sorted(values) and values[-1] == total


@pytest.mark.parametrize("press_before_check", [1, 2, 3])
def test_cancel_stops_the_node(models, comfy, press_before_check):
    """The interrupt button raises ComfyUI's own exception out of the node (nothing catches it) and the work
    stops there: later chunks never run."""
    comfy.free_bytes = 1  # one image per chunk, so the three content images are three steps
    comfy.interrupt_at = press_before_check
    encoder, _ = models
    with pytest.raises(InterruptProcessingException):
        _transfer(models, random_image(3, 32, 40), random_image(1, 32, 32))
    assert comfy.checks == press_before_check  # stopped at the check that saw the flag
    comfy.calls.clear()
    _transfer(models, random_image(3, 32, 40), random_image(1, 32, 32))  # the flag was cleared: runs again
    assert comfy.named("load_models_gpu")


class OutOfMemoryOnBatches(VGGEncoder):
    """The real encoder, failing as a GPU allocator would (with ``error``) when a call holds more than one image."""

    def __init__(self, source: VGGEncoder, error: BaseException) -> None:
        super().__init__()
        self.load_state_dict(source.state_dict())
        self.eval()
        self.error = error

    def encode(self, image, *args, **kwargs):
        if image.shape[0] > 1:
            raise self.error
        return super().encode(image, *args, **kwargs)


def test_out_of_memory_is_recognised_by_comfyui_and_backed_off(models, comfy):
    """ComfyUI decides what is out-of-memory (is_oom); the chunk is halved and ComfyUI's cache emptied."""
    encoder, decoder = models
    expected = _transfer(models, random_image(4, 32, 40), random_image(1, 32, 32))
    error = torch.OutOfMemoryError("CUDA out of memory (simulated)")
    wrapped = dataclasses.replace(encoder, network=OutOfMemoryOnBatches(encoder.network, error), patcher=None)
    comfy.calls.clear()
    got = _transfer((wrapped, decoder), random_image(4, 32, 40), random_image(1, 32, 32))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)  # other batch sizes: other float rounding
    assert [call[1][0] for call in comfy.named("is_oom")] == [error, error]  # 4 -> 2 -> 1 image per chunk
    assert len(comfy.named("soft_empty_cache")) == 2


def test_other_errors_are_not_taken_for_out_of_memory(models, comfy):
    encoder, decoder = models
    error = RuntimeError("a bug, not memory")
    wrapped = dataclasses.replace(encoder, network=OutOfMemoryOnBatches(encoder.network, error), patcher=None)
    with pytest.raises(RuntimeError, match="a bug"):
        _transfer((wrapped, decoder), random_image(2, 32, 40), random_image(1, 32, 32))
    assert [call[1][0] for call in comfy.named("is_oom")] == [error] and not comfy.named("soft_empty_cache")


def test_comfyui_without_is_oom_uses_its_oom_exception(models, comfy):
    """Versions of ComfyUI before is_oom only had OOM_EXCEPTION."""
    del comfy.modules["comfy.model_management"].is_oom
    runtime = ComfyRuntime()
    assert runtime.is_out_of_memory(torch.OutOfMemoryError("simulated"))
    assert not runtime.is_out_of_memory(RuntimeError("simulated"))


# ------------------------------------------------------------------------------------------ the real ComfyUI
REAL_COMFY_SCRIPT = textwrap.dedent("""
    import json, sys
    pack = sys.argv[1]
    sys.argv = sys.argv[:1] + ["--cpu"]
    sys.path.insert(0, ".")
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths  # noqa: F401 - imported by ComfyUI before custom nodes; the pack checks for it
    sys.path.insert(0, pack)
    import torch
    from adain_nodes import pipeline
    from adain_nodes.host import get_runtime
    from adain_nodes.models.loaded import LoadedModel
    from adain_nodes.models.networks import SkipDecoder, VGGEncoder

    torch.manual_seed(0)
    encoder = LoadedModel(VGGEncoder().eval(), "random", "random encoder")
    decoder = LoadedModel(SkipDecoder().eval(), "random", "random decoder")
    content, style = torch.rand(2, 3, 40, 48), torch.rand(1, 3, 32, 32)
    runtime = get_runtime()
    bars = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: bars.append((value, total)))
    image = pipeline.stylize(encoder, decoder, content, style, runtime)
    loaded = [m.model for m in mm.current_loaded_models]
    report = {"runtime": type(runtime).__name__, "shape": list(image.shape),
              "loaded": [encoder.patcher in loaded, decoder.patcher in loaded],
              "wraps": [encoder.patcher.model is encoder.network, decoder.patcher.model is decoder.network],
              "bars_end_full": bool(bars) and bars[-1][0] == bars[-1][1],
              "oom": [runtime.is_out_of_memory(torch.OutOfMemoryError("x")),
                      runtime.is_out_of_memory(RuntimeError("x"))]}
    mm.interrupt_current_processing(True)
    try:
        pipeline.stylize(encoder, decoder, content, style, runtime)
        report["interrupted"] = False
    except mm.InterruptProcessingException:
        report["interrupted"] = True
    report["flag_cleared"] = not mm.processing_interrupted()
    print("REPORT", json.dumps(report))
""")


def test_the_adapter_in_the_real_comfyui():
    """The same adapter on ComfyUI's own model management: the networks are among ComfyUI's loaded models,
    the global progress hook sees the bar end full, Cancel raises ComfyUI's exception, OOM is told apart."""
    python, comfy_dir = COMFY_HOME / "venv" / "bin" / "python", COMFY_HOME / "ComfyUI"
    if not (python.exists() and (comfy_dir / "comfy" / "model_management.py").exists()):
        pytest.skip(f"no ComfyUI at {COMFY_HOME} (set COMFY_HOME to a folder with ComfyUI/ and venv/)")
    done = subprocess.run([str(python), "-c", REAL_COMFY_SCRIPT, str(REPO)], cwd=comfy_dir, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": "", "ADAIN_DEVICE": ""})
    line = [x for x in done.stdout.splitlines() if x.startswith("REPORT ")]
    assert done.returncode == 0 and line, done.stderr[-3000:]
    assert json.loads(line[0][len("REPORT "):]) == {
        "runtime": "ComfyRuntime", "shape": [2, 3, 40, 48], "loaded": [True, True], "wraps": [True, True],
        "bars_end_full": True, "oom": [True, False], "interrupted": True, "flag_cleared": True}
