"""Loader nodes for encoder and decoder files of the ``adain`` model folder."""
from __future__ import annotations

import os
from functools import lru_cache

import torch

from ..host.paths import MODELS_FOLDER, list_files, resolve_file
from ..models.weights import load_decoder, load_encoder
from ..pipeline import PRECISIONS, resolve_precision
from .common import CATEGORY, DECODER, ENCODER

PRECISION_INPUT = (list(PRECISIONS), {
    "default": "auto",
    "tooltip": "Compute precision. auto: fp32 on the CPU (exact), fp16 on a GPU. bf16 is about twice as fast on "
               "CPUs with AVX-512 BF16, with small visible differences (see bench/)."})


@lru_cache(maxsize=8)
def _cached(kind: str, path: str, mtime: float, size: int, precision: str):
    model = (load_encoder if kind == "encoder" else load_decoder)(path)
    model.precision = precision
    return model


def _load(kind: str, name: str, precision: str):
    resolve_precision(precision, torch.device("cpu"))  # validates the choice
    path = resolve_file(MODELS_FOLDER, name)
    stat = os.stat(path)
    return _cached(kind, str(path), stat.st_mtime, stat.st_size, precision)


def _choices(prefer: str) -> list[str]:
    """All model files, the likely ones for this loader first so the default is sensible."""
    files = list_files(MODELS_FOLDER)
    return sorted(files, key=lambda f: (prefer not in f.lower(), f)) or ["(no files in models/adain)"]


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
        return {"required": {"encoder_name": (_choices("vgg"), {
            "tooltip": "Encoder weights in models/adain (vgg_normalised.pth or .safetensors)."}),
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
        return {"required": {"decoder_name": (_choices("decoder"), {
            "tooltip": "Decoder weights in models/adain; it must be trained for the encoder you use."}),
            "precision": PRECISION_INPUT}}

    def load(self, decoder_name: str, precision: str = "auto"):
        return (_load("decoder", decoder_name, precision),)
