"""The AdaIN encoder and decoder, laid out exactly like the reference port's nn.Sequential models.

Keeping the module indices of ``vgg_normalised.pth`` and ``decoder.pth`` means the released
files (and every file trained with the reference port) load without key remapping.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..core.layers import ADAIN_LAYER, ENCODER_LAYERS, SKIP_LAYERS
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

    levels: tuple[str, ...] = (ADAIN_LAYER,)  # the encoder layers it decodes, the AdaIN layer first

    def __init__(self) -> None:
        modules: list[nn.Module] = []
        for spec in _DECODER_CONVS:
            if spec == "U":
                modules.append(nn.Upsample(scale_factor=2, mode="nearest"))
            else:
                cin, cout = spec
                modules += _conv3x3(cin, cout) + [nn.ReLU()]
        super().__init__(*modules[:-1])  # the last conv has no ReLU

    @property
    def in_channels(self) -> int:
        return self[1].in_channels

    def infer(self, features: Tensor) -> Tensor:
        """Inference forward, equal to ``self(features)`` up to float rounding but faster (``fused``)."""
        return run_fused(self, features)[0]


class SkipDecoder(nn.Module):
    """The relu4_1 decoder plus AdaIN'd features of SKIP_LAYERS, each added after the upsampling that reaches
    its grid through a 1x1 convolution initialised to zero.

    A fresh skip decoder therefore decodes exactly as the relu4_1 decoder loaded into its trunk; training
    (with the identity loss, which gives the skips a reason to carry structure) moves from there. The trunk
    keeps the reference port's module indices ("1.weight" ...), so a relu4_1 decoder file is a skip decoder's
    trunk; the skips add "skip.relu3_1.weight" and so on, which is how a file says which kind it is.
    """

    levels: tuple[str, ...] = (ADAIN_LAYER,) + SKIP_LAYERS

    def __init__(self) -> None:
        super().__init__()
        trunk = list(AdaINDecoder())
        for index, module in enumerate(trunk):
            self.add_module(str(index), module)
        self._trunk_size = len(trunk)
        by_stride = {ENCODER_LAYERS[name].stride: name for name in SKIP_LAYERS}
        self.entries: dict[int, str] = {}  # trunk index -> the level added to its input
        stride = ENCODER_LAYERS[ADAIN_LAYER].stride
        for index, module in enumerate(trunk):
            if isinstance(module, nn.Upsample):
                stride //= 2
                if stride in by_stride:
                    self.entries[index + 1] = by_stride[stride]
        if sorted(self.entries.values()) != sorted(SKIP_LAYERS):
            raise ValueError(f"the decoder has no upsampling that reaches the grid of each of {SKIP_LAYERS}")
        self.skip = nn.ModuleDict()
        for index, name in self.entries.items():
            conv = nn.Conv2d(ENCODER_LAYERS[name].channels, trunk[index + 1].in_channels, 1)
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
            self.skip[name] = conv

    @property
    def in_channels(self) -> int:
        return getattr(self, "1").in_channels

    def trunk(self) -> list[nn.Module]:
        return [getattr(self, str(index)) for index in range(self._trunk_size)]

    def _levels(self, skips: tuple[Tensor, ...]) -> dict[str, Tensor]:
        if len(skips) != len(SKIP_LAYERS):
            raise ValueError(f"a skip decoder takes the features of {self.levels}, got {1 + len(skips)} tensors")
        return dict(zip(SKIP_LAYERS, skips))

    def forward(self, features: Tensor, *skips: Tensor) -> Tensor:
        """Decode ``features`` (ADAIN_LAYER) with ``skips``, one per SKIP_LAYERS in that order."""
        levels, x = self._levels(skips), features
        for index, module in enumerate(self.trunk()):
            if index in self.entries:
                name = self.entries[index]
                x = x + self.skip[name](levels[name].to(x.dtype))
            x = module(x)
        return x

    def infer(self, features: Tensor, *skips: Tensor) -> Tensor:
        """Inference forward, equal to ``self(features, *skips)`` up to float rounding but faster (``fused``)."""
        levels, x, trunk = self._levels(skips), features, self.trunk()
        bounds = [0, *sorted(self.entries), len(trunk)]
        for start, stop in zip(bounds, bounds[1:]):
            if start in self.entries:
                name = self.entries[start]
                x = x + self.skip[name](levels[name].to(x.dtype))
            x = run_fused(trunk[start:stop], x)[0]
        return x


# What a decoder file can hold, by the name training options and metadata use.
DECODER_KINDS: dict[str, type[nn.Module]] = {"relu4_1": AdaINDecoder, "skip": SkipDecoder}
