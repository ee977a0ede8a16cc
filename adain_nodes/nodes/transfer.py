"""One-node style transfer and colour matching."""
from __future__ import annotations

from .. import pipeline
from ..core.color import match_color
from ..core.image import batch_index
from .common import (ALPHA_INPUT, BOOST_INPUT, CATEGORY, DECODER_INPUT, DETAIL_INPUT, ENCODER_INPUT, REFINE_INPUT,
                     TILE_INPUTS, get_runtime, tiling, to_host, to_network)


class AdaINStyleTransfer:
    DISPLAY_NAME = "AdaIN Style Transfer"
    DESCRIPTION = ("Arbitrary style transfer in one node (Huang & Belongie 2017): encode, AdaIN, decode. "
                   "preserve_color keeps the content's colours, by recolouring the style first or by "
                   "transferring luminance only.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The stylized content image(s), at the content's size.",)
    FUNCTION = "transfer"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder": ENCODER_INPUT,
            "decoder": DECODER_INPUT,
            "content_image": ("IMAGE", {"tooltip": "The image(s) to stylize."}),
            "style_image": ("IMAGE", {"tooltip": "The style: a batch of 1 applies to every content image, "
                                                 "an equal batch pairs up."}),
            "alpha": ALPHA_INPUT,
            "preserve_color": (list(pipeline.COLOR_MODES), {
                "default": "off",
                "tooltip": "off: take the style's colours. match style colors: recolour the style image to the "
                           "content's colour statistics first. luminance only: stylize brightness, keep the "
                           "content's colours."}),
            **TILE_INPUTS,
        }, "optional": {
            "content_detail": DETAIL_INPUT,
            "style_boost": BOOST_INPUT,
            "style_refine": REFINE_INPUT,
        }}

    def transfer(self, encoder, decoder, content_image, style_image, alpha, preserve_color="off", tile_size=1024,
                 tile_overlap=64, content_detail=0.0, style_boost=0.0, style_refine=0):
        content = to_network(content_image, "content_image")
        style = to_network(style_image, "style_image")
        return (to_host(pipeline.stylize(encoder, decoder, content, style, get_runtime(), alpha, preserve_color,
                                         tiling(tile_size, tile_overlap), content_detail, style_boost,
                                         style_refine)),)


class AdaINMatchColor:
    DISPLAY_NAME = "AdaIN Match Color"
    DESCRIPTION = ("Recolours an image so its RGB mean and covariance equal the reference's. Feed a style image "
                   "and the content as reference before AdaIN Style Stats to keep the content's colours.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The recoloured image.",)
    FUNCTION = "match"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The image to recolour (usually the style image)."}),
            "reference": ("IMAGE", {"tooltip": "Whose colours to take (usually the content image); a batch of 1 "
                                               "applies to every image, an equal batch pairs up."}),
        }}

    def match(self, image, reference):
        source = to_network(image, "image")
        target = to_network(reference, "reference")
        target = target[batch_index(source.shape[0], target.shape[0], "image", "reference")]
        return (to_host(match_color(source, target)),)
