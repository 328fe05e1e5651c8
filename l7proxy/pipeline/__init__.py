"""The request path: route, authenticate, resolve, authorize, answer locally or forward, splice,
audit.
"""
