"""The building blocks both models stand on: convolutions, residual stacks and the chains they
form (the VQ-VAE's encoders and decoders, the upsamplers' conditioner), and the transformer's
primitive ops (linear layers, layer norm, attention). Nothing here imports vqvae/ or prior/.
"""

# The Keras serialization namespace of every registered class ("jukebox_tf>Conv1D"): saved
# `.keras` files name classes by it, not by their module, so it never changes.
PACKAGE = "jukebox_tf"
