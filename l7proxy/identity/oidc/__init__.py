"""OIDC bearer-token authentication: pure JWT verification, JWKS fetching and caching."""
