"""ComfyUI nodes: a thin layer over ``adain_nodes.pipeline`` using the classic node API."""
from .features import AdaINBlend, AdaINDecode, AdaINEncode
from .loaders import AdaINDecoderLoader, AdaINEncoderLoader
from .matching import AdaINImage, AdaINLatent
from .styles import AdaINBoostStyle, AdaINLoadStyle, AdaINMixStyles, AdaINRefineStyle, AdaINSaveStyle, AdaINStyleStats
from .transfer import AdaINMatchColor, AdaINStyleTransfer
from .video import AdaINVideoStyleTransfer

_NODES = (AdaINEncoderLoader, AdaINDecoderLoader, AdaINEncode, AdaINStyleStats, AdaINBlend, AdaINMixStyles,
          AdaINBoostStyle, AdaINRefineStyle, AdaINDecode, AdaINStyleTransfer, AdaINMatchColor, AdaINSaveStyle,
          AdaINLoadStyle, AdaINImage, AdaINLatent, AdaINVideoStyleTransfer)

NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in _NODES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.__name__: cls.DISPLAY_NAME for cls in _NODES}
