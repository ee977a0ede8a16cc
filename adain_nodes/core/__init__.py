"""Pure tensor maths of AdaIN: statistics, normalisation, colour, image layout. No host imports."""
