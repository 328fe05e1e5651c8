"""The running gateway: listener, pipeline, identity, upstreams, audit."""

__version__ = "0.1.0"
