"""Sans-I/O wire code and Kubernetes request semantics.

Nothing in this package performs I/O, reads a clock or imports the running gateway:
bytes and parsed values go in, typed events and values come out.
"""
