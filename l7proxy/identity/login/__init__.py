"""Sign-in for kubectl: `l7proxy login` (the exec credential plugin) and `l7proxy kubeconfig`.

Kept apart from the gateway: nothing here imports trio or the request path, and the gateway
never imports this package.
"""

from l7proxy.identity.login.command import add_login_arguments, run_login
from l7proxy.identity.login.http import LoginError
from l7proxy.identity.login.kubeconfig import add_kubeconfig_arguments, run_kubeconfig

__all__ = [
    "LoginError",
    "add_kubeconfig_arguments",
    "add_login_arguments",
    "run_kubeconfig",
    "run_login",
]
