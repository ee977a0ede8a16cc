"""Which files are images: one list for the runner's LoadImage, the trainer's folders and the benchmarks.

Free of torch and of the rest of the pack, so scripts in other environments (bench/peer_*) can use it.
"""
from PIL import Image, UnidentifiedImageError

# What ComfyUI lists in its input folder (image mimetypes) and Pillow reads.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
# Decode failures that mean "bad file", not "bug": PIL raises all of these on corrupt data.
IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)
