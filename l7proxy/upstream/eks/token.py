"""The EKS bearer token: a presigned STS `GetCallerIdentity` URL, exactly as
aws-iam-authenticator and `aws eks get-token` make it.

EKS decodes the token, checks the URL (https, an STS host of the partition, path `/`,
only SigV4 query parameters, `Action=GetCallerIdentity`, `x-k8s-aws-id` among the signed
headers, `X-Amz-Date` less than 15 minutes old) and sends it to STS with its cluster name in
`x-k8s-aws-id`; the identity STS answers is who the cluster sees. Signing is local and cheap:
nothing here does I/O.
"""

from __future__ import annotations

import base64
import calendar
import re
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.auth import SIGV4_TIMESTAMP, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.loaders import create_loader

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
STS_API_VERSION = "2011-06-15"
# Ignored by STS (a presigned GetCallerIdentity is accepted for 15 minutes after X-Amz-Date
# whatever it says), but aws-iam-authenticator 0.3 and older insist on 0..60, so 60 it is.
PRESIGN_EXPIRES = 60
TOKEN_LIFETIME = 15 * 60
# Tokens are re-minted well inside their life so a request never carries one about to lapse.
TOKEN_REFRESH_AFTER = 10 * 60


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """Temporary credentials of an assumed role; `expiration` is in Unix seconds."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: float


@dataclass(frozen=True, slots=True)
class EksToken:
    value: str = field(repr=False)
    signed_at: float  # X-Amz-Date in Unix seconds: STS accepts the URL until 15 minutes later


def regional_sts_endpoint(region: str) -> str:
    """STS's regional endpoint (never the global one: EKS accepts only its partition's hosts).

    The DNS suffix comes from botocore's partition table, so `cn-` regions get
    `amazonaws.com.cn` and the isolated partitions theirs.
    """
    partitions: list[dict[str, Any]] = create_loader().load_data("partitions")["partitions"]
    suffix = "amazonaws.com"
    for partition in partitions:
        if re.match(partition["regionRegex"], region):
            suffix = partition["outputs"]["dnsSuffix"]
            break
    return f"https://sts.{region}.{suffix}"


def mint_token(
    credentials: AwsCredentials, *, cluster_name: str, region: str, sts_endpoint: str
) -> EksToken:
    """Presign `GET <sts_endpoint>/?Action=GetCallerIdentity` with `x-k8s-aws-id` signed."""
    request = AWSRequest(
        method="GET",
        url=sts_endpoint.rstrip("/") + "/",
        params={"Action": "GetCallerIdentity", "Version": STS_API_VERSION},
        headers={CLUSTER_ID_HEADER: cluster_name},
    )
    signer = SigV4QueryAuth(
        Credentials(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        ),
        "sts",
        region,
        expires=PRESIGN_EXPIRES,
    )
    signer.add_auth(request)
    url: str = request.url
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    signed_at = calendar.timegm(time.strptime(request.context["timestamp"], SIGV4_TIMESTAMP))
    return EksToken(TOKEN_PREFIX + encoded, float(signed_at))
