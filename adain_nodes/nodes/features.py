"""Modular graph nodes: encode, blend with a style (AdaIN), decode."""
from __future__ import annotations

from .. import pipeline
from ..core.layers import ADAIN_LAYER
from ..errors import AdaINInputError
from .common import (ALPHA_INPUT, CATEGORY, DECODER, DETAIL_INPUT, ENCODER_INPUT, FEATURES, STYLE, TILE_INPUTS,
                     get_runtime, tiling, to_host, to_network)


class AdaINEncode:
    DISPLAY_NAME = "AdaIN Encode"
    DESCRIPTION = ("Encodes content images with the VGG19 encoder. Encode once, then try many styles and alphas: "
                   "the features are reused, nothing is encoded again.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (FEATURES,)
    RETURN_NAMES = ("features",)
    OUTPUT_TOOLTIPS = ("relu4_1 features of the content images (and relu3_1, relu2_1 for a skip decoder), ready "
                       "for AdaIN Blend or AdaIN Decode.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder": ENCODER_INPUT,
            "image": ("IMAGE", {"tooltip": "Content image(s); any size, RGB, RGBA or greyscale."}),
            **TILE_INPUTS,
        }, "optional": {
            "decoder": (DECODER, {"tooltip": "Connect the decoder these features go to when it is a skip decoder "
                                             "(it also takes shallower levels, relu3_1 and finer, encoded only then). "
                                             "Not needed for relu4_1 decoders such as the released decoder.pth."}),
        }}

    def encode(self, encoder, image, tile_size=1024, tile_overlap=64, decoder=None):
        levels = decoder.network.levels if decoder is not None else (ADAIN_LAYER,)
        return (pipeline.encode(encoder, to_network(image, "image"), get_runtime(), tiling(tile_size, tile_overlap),
                                levels),)


class AdaINBlend:
    DISPLAY_NAME = "AdaIN Blend"
    DESCRIPTION = ("Adaptive Instance Normalization: gives the content features the style's channel mean and std. "
                   "alpha trades content for style; a mask limits the style to a region, with statistics taken "
                   "inside it. Chain two blends with complementary masks for two styles in one picture.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (FEATURES,)
    RETURN_NAMES = ("features",)
    OUTPUT_TOOLTIPS = ("Stylized features; decode them or blend another style into another region.",)
    FUNCTION = "blend"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "features": (FEATURES, {"tooltip": "From AdaIN Encode (or another AdaIN Blend)."}),
            "style": (STYLE, {"tooltip": "From AdaIN Style Stats, Mix Styles or Load Style. A batch of 1 applies "
                                         "to every content image; a batch of the same size pairs up."}),
            "alpha": ALPHA_INPUT,
        }, "optional": {
            "mask": ("MASK", {"tooltip": "Where the style applies (1) and where the input features stay (0); "
                                         "soft edges blend. Stretched to the content image's size."}),
            "pool_frames": ("INT", {
                "default": 1, "min": 1, "max": 256,
                "tooltip": "For a video's frames (the batch in order): normalise each frame by content statistics "
                           "pooled over it and the frames before it, up to this many, so the picture does not pump "
                           "as things enter and leave. 1: each image's own. Not with a mask. AdaIN Video Style "
                           "Transfer does this and more (grid alignment to the camera's motion, scene cuts)."}),
        }}

    def blend(self, features, style, alpha, mask=None, pool_frames=1):
        pooled = pipeline.clip_statistics(features, pool_frames)
        if pooled is not None and mask is not None:
            raise AdaINInputError("pool_frames above 1 pools each frame's statistics over the whole picture, a mask "
                                  "takes them inside the mask: set pool_frames to 1 or disconnect the mask")
        return (pipeline.blend(features, style, alpha, mask, content_stats=pooled),)


class AdaINDecode:
    DISPLAY_NAME = "AdaIN Decode"
    DESCRIPTION = "Decodes (stylized) features to an image of the same size as the encoded content image."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The stylized image, RGB in 0..1.",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "decoder": (DECODER, {"tooltip": "From AdaIN Decoder Loader; trained for the same encoder."}),
            "features": (FEATURES, {"tooltip": "From AdaIN Blend (or AdaIN Encode to reconstruct the content)."}),
            **TILE_INPUTS,
        }, "optional": {
            "content_image": ("IMAGE", {"tooltip": "The image that was encoded: content_detail takes its fine edges "
                                                   "from it. Needed only when content_detail is above 0."}),
            "content_detail": DETAIL_INPUT,
        }}

    def decode(self, decoder, features, tile_size=1024, tile_overlap=64, content_image=None, content_detail=0.0):
        if pipeline.check_unit(content_detail, "content_detail") and content_image is None:
            raise AdaINInputError("content_detail is above 0 but no content_image is connected: connect the image "
                                  "that was encoded, or set content_detail to 0")
        image = pipeline.decode(decoder, features, get_runtime(), tiling(tile_size, tile_overlap))
        if content_image is not None:
            content = to_network(content_image, "content_image").to(image.device)
            image = pipeline.with_content_detail(image, content, content_detail)
        return (to_host(image),)
