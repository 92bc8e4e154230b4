"""Audio in and out: decoding, resampling, chunking, the TFRecord dataset and its reader."""
