"""The custom TFX components of the jukebox-tf pipeline (issue 6)."""
