"""The AdaIN encoder and decoder, laid out exactly like the reference port's nn.Sequential models.

Keeping the module indices of ``vgg_normalised.pth`` and ``decoder.pth`` means the released
files (and every file trained with the reference port) load without key remapping.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..core.layers import ADAIN_LAYER, ENCODER_LAYERS
from .fused import run_fused

# The encoder's first modules (the 1x1 colour conv, conv1_1 and its ReLU) always run in float32 on the
# fast path: bf16's 8-bit mantissa would round the image itself to about half a grey level, an error
# AdaIN amplifies in flat regions (a photo at 768 px: 41 dB against fp32 output; 50 dB with these in float32).
FLOAT32_INPUT_MODULES = ENCODER_LAYERS["relu1_1"].end

# Convolution channels of VGG19 up to relu5_4, "M" for 2x2 max-pooling.
_VGG19_CONVS: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                                 512, 512, 512, 512]
# The released vgg_normalised.pth holds all 53 modules; the encoder uses the first 31.
RELEASED_VGG_MODULES = 53
# Decoder: channel pairs of each reflection-padded 3x3 conv, "U" for 2x nearest upsampling.
_DECODER_CONVS: list[tuple[int, int] | str] = [(512, 256), "U", (256, 256), (256, 256), (256, 256), (256, 128), "U",
                                               (128, 128), (128, 64), "U", (64, 64), (64, 3)]


def _conv3x3(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]


def vgg19_modules(count: int = ENCODER_LAYERS[ADAIN_LAYER].end) -> list[nn.Module]:
    """The first ``count`` modules of the reference port's normalised VGG19 Sequential."""
    modules: list[nn.Module] = [nn.Conv2d(3, 3, 1)]  # fixed RGB [0,1] -> mean-subtracted BGR 0..255
    cin = 3
    for spec in _VGG19_CONVS:
        if spec == "M":
            modules.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
        else:
            modules += _conv3x3(cin, int(spec)) + [nn.ReLU()]
            cin = int(spec)
    return modules[:count]


class VGGEncoder(nn.Sequential):
    """Normalised VGG19 up to relu4_1; ``encode`` returns the named layers asked for."""

    def __init__(self) -> None:
        super().__init__(*vgg19_modules())

    def encode(self, image: Tensor, layers: tuple[str, ...] = (ADAIN_LAYER,), fast: bool = False) -> list[Tensor]:
        """Features of ``image`` (RGB ``[B, 3, H, W]`` in 0..1) at ``layers``, in the order given.

        ``fast`` runs the fused inference path (``fused``): same result up to float rounding, no autograd.
        """
        unknown = [name for name in layers if name not in ENCODER_LAYERS]
        if unknown:
            raise ValueError(f"unknown encoder layers {unknown}; choose from {list(ENCODER_LAYERS)}")
        stop = max(ENCODER_LAYERS[name].end for name in layers)
        wanted = {ENCODER_LAYERS[name].end: name for name in layers}
        if fast:
            taps = run_fused(self, image, stop, tuple(wanted), FLOAT32_INPUT_MODULES)[1]
            return [taps[ENCODER_LAYERS[name].end] for name in layers]
        found: dict[str, Tensor] = {}
        x = image
        for index, module in enumerate(self):
            if index >= stop:
                break
            x = module(x)
            if index + 1 in wanted:
                found[wanted[index + 1]] = x
        return [found[name] for name in layers]


class AdaINDecoder(nn.Sequential):
    """Mirror of the encoder to relu4_1: reflection-padded convs, nearest upsampling, no output activation."""

    def __init__(self) -> None:
        modules: list[nn.Module] = []
        for spec in _DECODER_CONVS:
            if spec == "U":
                modules.append(nn.Upsample(scale_factor=2, mode="nearest"))
            else:
                cin, cout = spec
                modules += _conv3x3(cin, cout) + [nn.ReLU()]
        super().__init__(*modules[:-1])  # the last conv has no ReLU

    def infer(self, features: Tensor) -> Tensor:
        """Inference forward, equal to ``self(features)`` up to float rounding but faster (``fused``)."""
        return run_fused(self, features)[0]
