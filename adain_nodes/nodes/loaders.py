"""Loader nodes for encoder and decoder files of the ``adain`` model folder."""
from __future__ import annotations

import dataclasses
import os
from functools import lru_cache

import torch

from .. import download
from ..errors import AdaINInputError
from ..host.paths import MODELS_FOLDER, list_files, resolve_file
from ..models.loaded import LoadedModel
from ..models.precision import PRECISIONS, resolve_precision
from ..models.weights import load_decoder, load_encoder
from .common import CATEGORY, DECODER, ENCODER, get_runtime

PRECISION_INPUT = (list(PRECISIONS), {
    "default": "auto",
    "tooltip": "Compute precision. auto: bf16 on CPUs with AVX-512 BF16 or AMX (about twice as fast, 45 dB or "
               "more from fp32), else fp32 on the CPU; fp16 on a GPU. fp32 is exact everywhere (see bench/)."})


@lru_cache(maxsize=8)
def _cached(kind: str, path: str, mtime: float, size: int, precision: str) -> LoadedModel:
    model = (load_encoder if kind == "encoder" else load_decoder)(path)
    return dataclasses.replace(model, precision=precision)


def _load(kind: str, name: str, precision: str) -> LoadedModel:
    resolve_precision(precision, torch.device("cpu"))  # validates the choice
    try:
        path = resolve_file(MODELS_FOLDER, name)
    except AdaINInputError:
        if name not in download.missing_known(kind):
            raise
        # A released file the user picked from the list: the URL and hash come from the pack's table.
        path = download.ensure_file(name, progress=_host_progress())
    stat = os.stat(path)
    return _cached(kind, str(path), stat.st_mtime, stat.st_size, precision)


def _host_progress() -> download.Progress:
    """Download progress on the host's progress bar (ComfyUI's ProgressBar); its interrupt cancels."""
    runtime = get_runtime()
    bars: dict[int, object] = {}

    def report(done: int, total: int | None) -> None:
        runtime.check_interrupt()
        if total:
            bar = bars.setdefault(total, runtime.progress(total))
            bar(done)

    return report


def _choices(prefer: str, kind: str) -> list[str]:
    """All model files, the likely ones for this loader first so the default is sensible, then the released
    files not downloaded yet (fetched when the loader runs with one of them)."""
    files = sorted(list_files(MODELS_FOLDER), key=lambda f: (prefer not in f.lower(), f))
    return files + download.missing_known(kind) or ["(no files in models/adain)"]


def _download_note(kind: str) -> str:
    return (" Not yet in the folder, fetched from the reference release when first run (hash-verified, converted "
            f"to safetensors): {', '.join(download.missing_known(kind))}." if download.missing_known(kind) else "")


class AdaINEncoderLoader:
    DISPLAY_NAME = "AdaIN Encoder Loader"
    DESCRIPTION = ("Loads the fixed VGG19 encoder (relu4_1) of AdaIN style transfer: the reference port's "
                   "vgg_normalised.pth or a .safetensors conversion, from the models/adain folder.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (ENCODER,)
    RETURN_NAMES = ("encoder",)
    OUTPUT_TOOLTIPS = ("The frozen VGG19 encoder, shared by content and style.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"encoder_name": (_choices("vgg", "encoder"), {
            "tooltip": "Encoder weights in models/adain (vgg_normalised.pth or .safetensors)."
                       + _download_note("encoder")}),
            "precision": PRECISION_INPUT}}

    def load(self, encoder_name: str, precision: str = "auto"):
        return (_load("encoder", encoder_name, precision),)


class AdaINDecoderLoader:
    DISPLAY_NAME = "AdaIN Decoder Loader"
    DESCRIPTION = ("Loads an AdaIN decoder (the reference port's decoder.pth, the pack's own trained decoder, "
                   "or any .safetensors with the same keys) from the models/adain folder.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (DECODER,)
    RETURN_NAMES = ("decoder",)
    OUTPUT_TOOLTIPS = ("The decoder that turns (stylized) relu4_1 features back into an image.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"decoder_name": (_choices("decoder", "decoder"), {
            "tooltip": "Decoder weights in models/adain; it must be trained for the encoder you use."
                       + _download_note("decoder")}),
            "precision": PRECISION_INPUT}}

    def load(self, decoder_name: str, precision: str = "auto"):
        return (_load("decoder", decoder_name, precision),)
