"""Applications, one file each, built from the library below them."""
