"""Who is calling: OIDC bearer-token verification for the gateway (`oidc`), and sign-in for kubectl
(`login`).
"""
