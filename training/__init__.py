"""The trainer that produces the pack's AdaIN decoder weights (Huang & Belongie 2017, section 6).

Kept free of ComfyUI: it only uses ``adain_nodes``' networks, weight files and maths, so the
decoder it trains is exactly what the nodes run. Entry point: ``python -m training.train``.
"""
