"""The commands around the gateway: the CLI, the local demo with its sandbox cluster and
development issuer, explain and replay.
"""
