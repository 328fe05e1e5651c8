"""Configuration: the frozen settings the gateway runs on, and the loader that validates a file
into them.
"""
