"""Style nodes: statistics from images, mixing, presets on disk."""
from __future__ import annotations

import hashlib

from .. import pipeline
from ..errors import AdaINInputError
from ..host.paths import STYLES_FOLDER, check_relative_name, list_files, resolve_file, writable_path
from ..presets import load_style, save_style
from .common import (BOOST_INPUT, CATEGORY, DECODER_INPUT, ENCODER, REFINE_INPUT, STYLE, TILE_INPUTS, get_runtime,
                     tiling, to_network)

WEIGHT_INPUT = {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                "tooltip": "Relative weight of this style; weights are normalised to sum 1."}


class AdaINStyleStats:
    DISPLAY_NAME = "AdaIN Style Stats"
    DESCRIPTION = ("Computes a style (channel mean and std of the style image's relu4_1 features). Compute it once "
                   "and reuse it for any number of content images or frames.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLE,)
    RETURN_NAMES = ("style",)
    OUTPUT_TOOLTIPS = ("One style per style image, or one averaged style.",)
    FUNCTION = "compute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder": (ENCODER, {"tooltip": "The same encoder as the content's."}),
            "image": ("IMAGE", {"tooltip": "Style image(s); a batch gives one style each."}),
            "average_batch": ("BOOLEAN", {"default": False, "tooltip": "Average a batch of style images into one "
                                                                       "style instead of one style per image."}),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "Take the statistics only where the mask is 1 (a region of the style "
                                         "image)."}),
        }}

    def compute(self, encoder, image, average_batch=False, mask=None):
        return (pipeline.style_statistics(encoder, to_network(image, "image"), get_runtime(), mask, average_batch),)


class AdaINBoostStyle:
    DISPLAY_NAME = "AdaIN Boost Style"
    DESCRIPTION = ("More style than alpha 1 in the modular graph (what AdaIN Style Transfer's style_boost does in one "
                   "node): from a first decode at alpha 1, measures what the decoder missed of the style's statistics "
                   "and returns the style moved that fraction past them, to blend the same features with again.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLE,)
    RETURN_NAMES = ("style",)
    OUTPUT_TOOLTIPS = ("One boosted style per decoded image: blend the same content features with it (any alpha) "
                       "and decode again.",)
    FUNCTION = "boost"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder": (ENCODER, {"tooltip": "The same encoder as the style's."}),
            "decoder": DECODER_INPUT,
            "style": (STYLE, {"tooltip": "The style the first decode was blended with."}),
            "decoded": ("IMAGE", {"tooltip": "The first decode: the content's features blended with this style at "
                                             "alpha 1, decoded by this decoder."}),
            "style_boost": ("FLOAT", {**BOOST_INPUT[1], "default": 0.5}),
            **TILE_INPUTS,
        }}

    def boost(self, encoder, decoder, style, decoded, style_boost=0.5, tile_size=1024, tile_overlap=64):
        return (pipeline.boosted_style(encoder, decoder, style, to_network(decoded, "decoded"), style_boost,
                                       get_runtime(), tiling(tile_size, tile_overlap)),)


class AdaINRefineStyle:
    DISPLAY_NAME = "AdaIN Refine Style"
    DESCRIPTION = ("More style than alpha 1 in the modular graph (what AdaIN Style Transfer's style_refine does in "
                   "one node): a few gradient steps on the paper's own loss adjust the style's statistics for this "
                   "content image, so its decode lands nearer the style. Refine once, then blend at any alpha.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLE,)
    RETURN_NAMES = ("style",)
    OUTPUT_TOOLTIPS = ("One refined style per content image: blend that image's features with it (any alpha) and "
                       "decode.",)
    FUNCTION = "refine"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder": (ENCODER, {"tooltip": "The same encoder as the style's and the content's."}),
            "decoder": DECODER_INPUT,
            "style": (STYLE, {"tooltip": "The style to refine (from AdaIN Style Stats, Mix Styles or Load Style)."}),
            "content_image": ("IMAGE", {"tooltip": "The content image(s) whose features the refined style will be "
                                                   "blended with."}),
            "style_refine": ("INT", {**REFINE_INPUT[1], "default": 1}),
        }}

    def refine(self, encoder, decoder, style, content_image, style_refine=1):
        return (pipeline.refined_style(encoder, decoder, to_network(content_image, "content_image"), style,
                                       style_refine, get_runtime()),)


class AdaINMixStyles:
    DISPLAY_NAME = "AdaIN Mix Styles"
    DESCRIPTION = ("Interpolates two to four styles with weights (normalised to sum 1), as in the paper's style "
                   "interpolation. Unconnected optional styles are ignored.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLE,)
    RETURN_NAMES = ("style",)
    OUTPUT_TOOLTIPS = ("The mixed style.",)
    FUNCTION = "mix"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "style_1": (STYLE, {"tooltip": "First style."}),
            "weight_1": ("FLOAT", WEIGHT_INPUT),
            "style_2": (STYLE, {"tooltip": "Second style."}),
            "weight_2": ("FLOAT", WEIGHT_INPUT),
        }, "optional": {
            "style_3": (STYLE, {"tooltip": "Optional third style."}),
            "weight_3": ("FLOAT", WEIGHT_INPUT),
            "style_4": (STYLE, {"tooltip": "Optional fourth style."}),
            "weight_4": ("FLOAT", WEIGHT_INPUT),
        }}

    def mix(self, style_1, weight_1, style_2, weight_2, style_3=None, weight_3=1.0, style_4=None, weight_4=1.0):
        pairs = [(style_1, weight_1), (style_2, weight_2), (style_3, weight_3), (style_4, weight_4)]
        connected = [(i, s, w) for i, (s, w) in enumerate(pairs, 1) if s is not None]
        return (pipeline.mix_styles([s for _, s, _ in connected], [w for _, _, w in connected],
                                    [i for i, _, _ in connected]),)


def _preset_name(name: str) -> str:
    name = check_relative_name(name.strip() if isinstance(name, str) else name, "name")
    stem = name.rsplit("/", 1)[-1]
    if not stem or stem.startswith("."):
        raise AdaINInputError(f"name: {name!r} does not end in a file name; give the preset a name such as "
                              "'starry_night' or 'paintings/starry_night'")
    return name if name.lower().endswith(".safetensors") else name + ".safetensors"


class AdaINSaveStyle:
    DISPLAY_NAME = "AdaIN Save Style"
    DESCRIPTION = ("Saves a style's statistics as a small preset (a few kB) in the adain_styles folder, so it can be "
                   "used later with AdaIN Load Style, without the style image.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("saved_to",)
    OUTPUT_TOOLTIPS = ("Where the preset was written (connect Preview as Text to see it in the editor).",)
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "style": (STYLE, {"tooltip": "The style to store."}),
            "name": ("STRING", {"default": "my_style", "tooltip": "Preset name (a file name inside adain_styles; "
                                                                  "subfolders allowed, no '..')."}),
            "overwrite": ("BOOLEAN", {"default": True, "tooltip": "Replace an existing preset of that name "
                                                                  "(atomically); off raises an error instead."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, name):
        """A name that leaves the presets folder is refused before the graph runs. A linked name is None here
        (ComfyUI passes links so): ``save`` checks it when it arrives."""
        if name is None:
            return True
        try:
            _preset_name(name)
        except AdaINInputError as exc:
            return str(exc)
        return True

    def save(self, style, name, overwrite=True):
        path = writable_path(STYLES_FOLDER, _preset_name(name))
        try:
            save_style(style, path, source=style.encoder_name, overwrite=overwrite)
        except FileExistsError:
            raise AdaINInputError(f"name: the preset {path} exists; choose another name or turn overwrite on") from None
        return {"ui": {"text": [str(path)]}, "result": (str(path),)}


# Output types a linked preset may come from: text, or a list of choices like the widget's own.
PRESET_LINK_TYPES = ("STRING", "COMBO", "*")


class AdaINLoadStyle:
    DISPLAY_NAME = "AdaIN Load Style"
    DESCRIPTION = "Loads a style preset saved by AdaIN Save Style."
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLE,)
    RETURN_NAMES = ("style",)
    OUTPUT_TOOLTIPS = ("The stored style; it only works with the encoder it was made with.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"preset": (list_files(STYLES_FOLDER) or ["(no presets saved yet)"], {
            "tooltip": "A preset in the adain_styles folder."})}}

    @classmethod
    def VALIDATE_INPUTS(cls, preset, input_types=None):
        """Before anything runs: a missing preset is named with the folder searched and how to fix it
        (ComfyUI then skips its plain 'value not in list'). A linked preset is None here (ComfyUI passes links
        so) and ``load`` checks it when it arrives; taking ``input_types`` makes ComfyUI leave the link's type to
        this check, so a text output (a String primitive) can name the preset, not only a list of choices."""
        if preset is None:
            received = (input_types or {}).get("preset")
            if received is None or isinstance(received, (list, tuple)) or received in PRESET_LINK_TYPES:
                return True
            return (f"preset takes a preset name (a {' or '.join(PRESET_LINK_TYPES)} output), not the {received} it "
                    "is linked to")
        try:
            resolve_file(STYLES_FOLDER, preset)
        except AdaINInputError as exc:
            return str(exc)
        return True

    @classmethod
    def IS_CHANGED(cls, preset):
        """The file's hash, so a preset saved again under its name loads anew; a linked preset (None before the
        run) cannot be hashed, so it always loads anew (NaN equals nothing), which costs reading a few kB."""
        if preset is None:
            return float("nan")
        try:
            return hashlib.sha256(resolve_file(STYLES_FOLDER, preset).read_bytes()).hexdigest()
        except (AdaINInputError, OSError):
            return preset

    def load(self, preset):
        return (load_style(resolve_file(STYLES_FOLDER, preset)),)
