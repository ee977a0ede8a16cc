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


def receptive_radius(layer: str) -> int:
    """Image pixels on each side of a feature pixel of ``layer`` that it depends on: a tile encoded with this
    much context around it has exactly the features of the whole image."""
    radius, jump = 0, 1
    for module in vgg19_modules(ENCODER_LAYERS[layer].end):
        if isinstance(module, nn.Conv2d):
            radius += (module.kernel_size[0] - 1) // 2 * jump
        elif isinstance(module, nn.MaxPool2d):
            radius += (module.kernel_size - 1) * jump
            jump *= module.stride
    return radius


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
            return self.run_fast(image, 0, tuple(ENCODER_LAYERS[name].end for name in layers))
        found: dict[str, Tensor] = {}
        x = image
        for index, module in enumerate(self):
            if index >= stop:
                break
            x = module(x)
            if index + 1 in wanted:
                found[wanted[index + 1]] = x
        return [found[name] for name in layers]


    def run_fast(self, x: Tensor, start: int, ends: tuple[int, ...]) -> list[Tensor]:
        """The outputs of modules ``ends`` (module counts, as ``EncoderLayer.end``) on the fused inference path,
        from ``x``: the image, or the output of the first ``start`` modules kept from an earlier run."""
        taps = run_fused(list(self)[start:], x, max(ends) - start, tuple(e - start for e in ends),
                         max(FLOAT32_INPUT_MODULES - start, 0))[1]
        return [taps[e - start] for e in ends]


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


class ResidualBlock(nn.Sequential):
    """``x + conv(relu(conv(x)))`` with reflection-padded 3x3 convolutions, the second initialised to zero: a fresh
    block is the identity, so adding one to a trained decoder changes nothing until training moves it."""

    def __init__(self, channels: int) -> None:
        super().__init__(*_conv3x3(channels, channels), nn.ReLU(), *_conv3x3(channels, channels))
        nn.init.zeros_(self[-1].weight)
        nn.init.zeros_(self[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + super().forward(x)

    def infer(self, x: Tensor) -> Tensor:
        """Inference forward on the fused path; adds into ``x`` (the decoder's own intermediate)."""
        return x.add_(run_fused(self, x)[0])


def _named_modules_of(keys: list[str], prefix: str) -> set[str]:
    """The names ``N`` of keys ``<prefix>.N.<...>`` in a state dict."""
    return {key.split(".")[1] for key in keys if key.startswith(prefix + ".") and key.count(".") >= 2}


class SkipDecoder(nn.Module):
    """The relu4_1 decoder plus AdaIN'd features of shallower levels (``skips``, SKIP_LAYERS by default), each
    added after the upsampling that reaches its grid through a 1x1 convolution initialised to zero.

    A fresh skip decoder therefore decodes exactly as the relu4_1 decoder loaded into its trunk; training
    (with the identity loss, which gives the skips a reason to carry structure) moves from there. The trunk
    keeps the reference port's module indices ("1.weight" ...), so a relu4_1 decoder file is a skip decoder's
    trunk; the skips add "skip.relu3_1.weight" and so on, which is how a file says which levels it takes
    (``skips_of``). Any level of the layer table whose stride an upsampling reaches can be a skip.

    ``blocks`` add capacity where texture is drawn: a ``ResidualBlock`` on the grid of each named level, run just
    before the upsampling that leaves that grid (where the trunk is narrowest). A fresh block is the identity, so it
    too starts from the decoder it is added to; a file declares its blocks as "block.relu4_1.1.weight" and so on.
    """

    levels: tuple[str, ...] = (ADAIN_LAYER,) + SKIP_LAYERS  # the default skips' levels; an instance has its own

    def __init__(self, skips: tuple[str, ...] = SKIP_LAYERS, blocks: tuple[str, ...] = ()) -> None:
        super().__init__()
        trunk = list(AdaINDecoder())
        for index, module in enumerate(trunk):
            self.add_module(str(index), module)
        self._trunk_size = len(trunk)
        self.levels = (ADAIN_LAYER,) + tuple(skips)
        self.blocks = tuple(blocks)
        self.entries: dict[int, list[str]] = {}  # trunk index -> the levels added to its input
        self.block_entries: dict[int, str] = {}  # trunk index -> the level whose residual block runs on its input
        stride = ENCODER_LAYERS[ADAIN_LAYER].stride
        for index, module in enumerate(trunk):
            if isinstance(module, nn.Upsample):
                for name in blocks:
                    if ENCODER_LAYERS[name].stride == stride:
                        self.block_entries[index] = name
                stride //= 2
                found = [name for name in skips if ENCODER_LAYERS[name].stride == stride]
                if found:
                    self.entries[index + 1] = found
        if sorted(n for names in self.entries.values() for n in names) != sorted(skips):
            raise ValueError(f"the decoder has no upsampling that reaches the grid of each of {skips}")
        self.skip = nn.ModuleDict()
        for index, names in self.entries.items():
            for name in names:
                conv = nn.Conv2d(ENCODER_LAYERS[name].channels, trunk[index + 1].in_channels, 1)
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
                self.skip[name] = conv
        if sorted(self.block_entries.values()) != sorted(blocks):
            raise ValueError(f"the decoder has no upsampling that leaves the grid of each of {blocks} (once each)")
        self.block = nn.ModuleDict()
        for index, name in self.block_entries.items():
            channels = next(m.out_channels for m in reversed(trunk[:index]) if isinstance(m, nn.Conv2d))
            self.block[name] = ResidualBlock(channels)

    @staticmethod
    def skips_of(keys: list[str]) -> tuple[str, ...]:
        """The skip levels a state dict's keys declare (``skip.<level>.weight``), deepest first; empty for a
        relu4_1 decoder. Keys of levels the layer table lacks are left to the layout check to report."""
        named = _named_modules_of(keys, "skip")
        known = [name for name in ENCODER_LAYERS if name in named and name != ADAIN_LAYER]
        return tuple(sorted(known, key=lambda name: -ENCODER_LAYERS[name].end))

    @staticmethod
    def blocks_of(keys: list[str]) -> tuple[str, ...]:
        """The levels whose residual blocks a state dict's keys declare (``block.<level>.*``), deepest first."""
        named = _named_modules_of(keys, "block")
        return tuple(sorted((n for n in ENCODER_LAYERS if n in named), key=lambda n: -ENCODER_LAYERS[n].end))

    @property
    def in_channels(self) -> int:
        return getattr(self, "1").in_channels

    def trunk(self) -> list[nn.Module]:
        return [getattr(self, str(index)) for index in range(self._trunk_size)]

    def _levels(self, skips: tuple[Tensor, ...]) -> dict[str, Tensor]:
        if len(skips) != len(self.levels) - 1:
            raise ValueError(f"a skip decoder takes the features of {self.levels}, got {1 + len(skips)} tensors")
        return dict(zip(self.levels[1:], skips))

    def _entering(self, x: Tensor, index: int, levels: dict[str, Tensor]) -> Tensor:
        """The trunk's input to module ``index``: its residual block run, then its skips added, where it has them."""
        if index in self.block_entries:
            x = self.block[self.block_entries[index]](x)
        for name in self.entries.get(index, ()):
            x = x + self.skip[name](levels[name].to(x.dtype))
        return x

    def forward(self, features: Tensor, *skips: Tensor) -> Tensor:
        """Decode ``features`` (ADAIN_LAYER) with ``skips``, one per level of ``levels[1:]`` in that order."""
        levels, x = self._levels(skips), features
        for index, module in enumerate(self.trunk()):
            x = module(self._entering(x, index, levels))
        return x

    def infer(self, features: Tensor, *skips: Tensor) -> Tensor:
        """Inference forward, equal to ``self(features, *skips)`` up to float rounding but faster (``fused``); each
        skip's output takes the upsampled map added in place (one pass, no upsampled copy)."""
        levels, x, trunk = self._levels(skips), features, self.trunk()
        bounds = sorted({0, *self.entries, *self.block_entries, len(trunk)})
        for start, stop in zip(bounds, bounds[1:]):
            if start in self.block_entries:
                x = self.block[self.block_entries[start]].infer(x)
            if start in self.entries:
                x = self._upsampled_with_skips(x, start, levels)
            x = run_fused(trunk[start:stop - 1 if stop in self.entries else stop], x)[0]
        return x

    def _upsampled_with_skips(self, x: Tensor, index: int, levels: dict[str, Tensor]) -> Tensor:
        """``_entering(upsample(x))`` for the nearest 2x upsampling before ``index``, added in the same order."""
        total = None
        for name in self.entries[index]:
            skip = self.skip[name](levels[name].to(x.dtype))
            if total is None:  # each 2x2 block of the first skip's output takes its source pixel of x
                total = skip
                total.unflatten(2, (-1, 2)).unflatten(4, (-1, 2)).add_(x[:, :, :, None, :, None])
            else:
                total = total.add_(skip)
        return total


# What a decoder file can hold, by the name training options and metadata use.
DECODER_KINDS: dict[str, type[nn.Module]] = {"relu4_1": AdaINDecoder, "skip": SkipDecoder}
