"""EKS connections: an IAM role assumed through STS per caller, turned into a `k8s-aws-v1.` token.

`token` is pure (signing only), `aws_bridge` is the one module where aiobotocore's asyncio
meets the gateway's trio, `credentials` caches assumed roles, `connector` puts them together.
"""
