"""gguftools: inspect, validate, edit and verify the MTP head of GGUF models."""

__version__ = "0.1.0"
