"""The codes dataset: what `jukebox-tf encode` writes and the priors train on (format.py), its
writer (encode.py) and its reader into per-track tokens (tracks.py). Below both models: the
VQ-VAE writes it, the priors read it, neither through the other.
"""
