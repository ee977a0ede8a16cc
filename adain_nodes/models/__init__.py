"""The networks (VGG19 encoder, AdaIN decoder) and their weight files."""
