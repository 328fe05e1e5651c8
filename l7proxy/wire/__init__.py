"""The wire side: TLS, the listener, HTTP/1.1 and HTTP/2 servers over trio, and the one `Exchange`
vocabulary both hand to the pipeline. Nothing here knows about identity, policy or clusters.
"""
