"""TFX components and the pipeline definition (issue 6); uses the jukebox_tf library only."""
