"""The layer table agrees with the network it describes: position, width and downsampling of each layer."""
from __future__ import annotations

import torch
from torch import nn

from adain_nodes.core.image import pad_for_encoder
from adain_nodes.core.layers import ADAIN_LAYER, ENCODER_LAYERS, GRID, STYLE_LAYERS
from adain_nodes.models.networks import AdaINDecoder, VGGEncoder


def test_layer_table_matches_the_encoder():
    encoder = VGGEncoder()
    size = 48
    features = encoder.encode(torch.rand(1, 3, size, size), STYLE_LAYERS)
    for name, feature in zip(STYLE_LAYERS, features):
        layer = ENCODER_LAYERS[name]
        assert isinstance(encoder[layer.end - 1], nn.ReLU), name
        assert feature.shape[1:] == (layer.channels, size // layer.stride, size // layer.stride), name
    assert len(encoder) == ENCODER_LAYERS[ADAIN_LAYER].end


def test_decoder_inverts_the_adain_layer_shape():
    layer = ENCODER_LAYERS[ADAIN_LAYER]
    out = AdaINDecoder()(torch.zeros(1, layer.channels, 3, 5))
    assert out.shape == (1, 3, 3 * layer.stride, 5 * layer.stride)
    padded = pad_for_encoder(torch.rand(1, 3, 17, 30))
    assert padded.shape[-2] % GRID == 0 and padded.shape[-1] % GRID == 0
