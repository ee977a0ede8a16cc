"""Errors the pack raises for bad input: each message names what is wrong and how to fix it."""


class AdaINInputError(ValueError):
    """An input (image, mask, statistics, option) cannot be used as given."""


class WeightFileError(ValueError):
    """A weight or preset file is missing, unreadable, unsafe or does not fit the network."""
