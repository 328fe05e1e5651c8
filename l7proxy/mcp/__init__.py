"""The MCP endpoint for agents: `/mcp/<connection>` (Streamable HTTP, MCP 2025-11-25).

Above the pipeline: each tool call is Kubernetes requests made through `Gateway.handle`
as the caller, so the request path — authorization, audit, redaction — applies to agents
exactly as to kubectl.
"""
