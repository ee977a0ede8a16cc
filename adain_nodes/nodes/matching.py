"""AdaIN on pixels and on latents: statistics matching to a reference, without the networks."""
from __future__ import annotations

from ..core.image import mask_to_size
from ..errors import AdaINInputError
from ..matching import check_channels_tensor, match_statistics
from .common import CATEGORY, to_host, to_network

STRENGTH_INPUT = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                            "tooltip": "How far each channel's mean and std move to the reference's: 0 keeps the "
                                       "input unchanged, 1 matches fully."})
REFERENCE_BATCH = "A batch of 1 applies to every input; a batch of the same size pairs up."


def _mask_input(what: str) -> tuple[str, dict]:
    return ("MASK", {"tooltip": f"Where to change the {what} (1) and where to keep it (0); soft edges blend. The "
                                f"{what}'s statistics are taken inside the mask. Resized to the {what}'s size."})


class AdaINImage:
    DISPLAY_NAME = "AdaIN Image"
    DESCRIPTION = ("Gives each RGB channel of the image the mean and standard deviation of the reference's: AdaIN "
                   "on pixels, for colour consistency across img2img passes or a reference's look. No model needed.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The image with the reference's channel statistics, at its own size.",)
    FUNCTION = "match"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The image(s) to adjust; any size, RGB, RGBA or greyscale."}),
            "reference": ("IMAGE", {"tooltip": "Whose channel statistics to take; any size. " + REFERENCE_BATCH}),
            "strength": STRENGTH_INPUT,
        }, "optional": {"mask": _mask_input("image")}}

    def match(self, image, reference, strength, mask=None):
        x = to_network(image, "image")
        weight = None if mask is None else mask_to_size(mask, x.shape[0], tuple(x.shape[-2:]), "mask")
        return (to_host(match_statistics(x, to_network(reference, "reference"), strength, weight)),)


def _samples(latent: object, name: str):
    if not isinstance(latent, dict) or "samples" not in latent:
        raise AdaINInputError(f"{name}: expected a LATENT (a dict with 'samples'), got {type(latent).__name__}")
    return latent["samples"]


class AdaINLatent:
    DISPLAY_NAME = "AdaIN Latent"
    DESCRIPTION = ("Gives each latent channel the mean and standard deviation of the reference latent's: AdaIN in "
                   "latent space, for any channel count (4 for SD1.x/SDXL, 16 for SD3/Flux). Every other entry of "
                   "the LATENT (noise_mask, batch_index, ...) is kept.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The latent with the reference's channel statistics; strength 0 passes it through unchanged.",)
    FUNCTION = "match"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT", {"tooltip": "The latent(s) to adjust."}),
            "reference": ("LATENT", {"tooltip": "Whose channel statistics to take: a latent of the same model "
                                                "family (same channel count), any size. " + REFERENCE_BATCH}),
            "strength": STRENGTH_INPUT,
        }, "optional": {"mask": _mask_input("latent")}}

    def match(self, latent, reference, strength, mask=None):
        samples = check_channels_tensor(_samples(latent, "latent"), "latent")
        weight = None if mask is None else mask_to_size(mask, samples.shape[0], tuple(samples.shape[-2:]), "mask",
                                                        area=True)
        result = match_statistics(samples, _samples(reference, "reference"), strength, weight, ("latent", "reference"))
        return (latent if result is samples else {**latent, "samples": result},)
