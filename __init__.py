"""ComfyUI entry point of the AdaIN node pack."""
from .adain_nodes.host.paths import register_folders
from .adain_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

register_folders()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
