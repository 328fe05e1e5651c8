"""The cluster side: pooled connections to a cluster and the connectors that add a connection's
service credential (static, EKS).
"""
