"""``python -m adain_nodes stylize-dataset``: stylize a whole image dataset (Stylized-ImageNet and its successors).

Deterministic (the style of an image depends only on the seed and its relative path), sharded over
torchrun ranks, resumable after a kill at any moment, with a manifest of every output.
"""
