"""adain-nodes: arbitrary style transfer with Adaptive Instance Normalization (Huang & Belongie 2017).

Layers, bottom up: ``core`` (pure tensor maths), ``models`` (networks and weight files),
``pipeline`` (the operations), ``host`` (ComfyUI or standalone runtime), ``nodes`` (the graph API).
"""
__version__ = "0.1.0"
