"""Which files are images: one list for the runner's LoadImage, the trainer's folders and the benchmarks.

Free of torch and of the rest of the pack, so scripts in other environments (bench/peer_*) can use it.
"""
from PIL import Image, UnidentifiedImageError

# What ComfyUI lists in its input folder (image mimetypes) and Pillow reads.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
# Decode failures that mean "bad file", not "bug": PIL raises all of these on corrupt data.
IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)
# The most one image file may decode to, all frames together, on every path (Pillow, PyAV): twice Pillow's
# warning size, where Pillow itself refuses a single frame as a decompression bomb; and at most this many
# frames (a tiny GIF can hold thousands of frames, each a tensor).
MAX_DECODED_PIXELS = 2 * 89_478_485
MAX_DECODED_FRAMES = 4096


def check_decoded_size(path: object, frames: int, pixels: int) -> None:
    """Refuse (Pillow's DecompressionBombError, which every reader treats as a bad file) before decoding
    more than MAX_DECODED_FRAMES frames or MAX_DECODED_PIXELS pixels of ``path`` in all."""
    if pixels > MAX_DECODED_PIXELS or frames > MAX_DECODED_FRAMES:
        raise Image.DecompressionBombError(
            f"{path}: decoding it would take more than {MAX_DECODED_PIXELS} pixels or {MAX_DECODED_FRAMES} frames "
            f"(it has {frames}+ frames, {pixels}+ pixels so far); scale it down or cut frames")
