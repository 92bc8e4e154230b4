"""The released Jukebox models: reading OpenAI's and Hugging Face's checkpoint files (without
torch), mapping their weights onto jukebox-tf's models, and writing ordinary run directories."""
