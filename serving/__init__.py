"""TF-Serving-compatible gRPC/REST server and client (issue 5); uses the jukebox_tf library."""
