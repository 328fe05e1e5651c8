"""Claim mappings and user validation, as kube-apiserver's JWT authenticator has them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from l7proxy.config.settings import Provider
from l7proxy.identity.oidc.jwt import TokenRejected, claims_to_identity
from tests.l7proxy.identity.oidc.test_oidc_jwt import PROVIDER, claims

EMAIL = replace(PROVIDER, username_claim="email")


def refused(token_claims: dict[str, object], provider: Provider = PROVIDER) -> str:
    with pytest.raises(TokenRejected) as info:
        claims_to_identity(token_claims, provider)
    return info.value.reason


# --- username and email_verified ------------------------------------------------------------


def test_email_username_with_email_verified_absent_is_accepted_as_kube_does() -> None:
    # kube-apiserver (oidc.go getUsername): email_verified is checked only when present.
    identity = claims_to_identity(claims(email="a@example.com"), EMAIL)
    assert identity.username == "a@example.com"


@pytest.mark.parametrize("verified", [False, "true", 1, None])
def test_email_username_needs_email_verified_true_when_present(verified: object) -> None:
    token_claims = claims(email="a@example.com", email_verified=verified)  # None: JSON null
    assert refused(token_claims, EMAIL) == (
        "token email address is not verified (email_verified is not true); verify it with "
        "the provider"
    )


def test_email_verified_can_be_waived() -> None:
    waived = replace(EMAIL, email_verified_required=False)
    token_claims = claims(email="a@example.com", email_verified=False)
    assert claims_to_identity(token_claims, waived).username == "a@example.com"


def test_email_verified_only_matters_for_an_email_username() -> None:
    identity = claims_to_identity(claims(email="a@example.com", email_verified=False), PROVIDER)
    assert identity.username == "alice"


def test_username_from_a_dotted_claim_path_with_prefix() -> None:
    provider = replace(PROVIDER, username_claim="profile.login", username_prefix="corp:")
    identity = claims_to_identity(claims(profile={"login": "al"}), provider)
    assert identity.username == "corp:al"


def test_empty_username_is_refused() -> None:
    assert refused(claims(sub="")) == "token has no 'sub' claim"


# --- groups -----------------------------------------------------------------------------------


def test_groups_as_a_single_string_or_a_list() -> None:
    assert claims_to_identity(claims(groups="admins"), PROVIDER).groups == ("admins",)
    assert claims_to_identity(claims(groups=["a", "b"]), PROVIDER).groups == ("a", "b")
    assert claims_to_identity(claims(groups=[]), PROVIDER).groups == ()
    assert claims_to_identity(claims(), PROVIDER).groups == ()


def test_groups_from_a_dotted_claim_path() -> None:
    provider = replace(PROVIDER, groups_claim="resource_access.kube.roles", groups_prefix="k:")
    token_claims = claims(resource_access={"kube": {"roles": ["viewer", "editor"]}})
    assert claims_to_identity(token_claims, provider).groups == ("k:viewer", "k:editor")


# --- uid and extra ----------------------------------------------------------------------------


def test_uid_defaults_to_sub() -> None:
    assert claims_to_identity(claims(sub="u-1"), PROVIDER).uid == "u-1"


def test_uid_from_another_claim() -> None:
    provider = replace(PROVIDER, uid_claim="oid")
    assert claims_to_identity(claims(oid="0000-1111"), provider).uid == "0000-1111"
    assert refused(claims(), provider) == "token has no 'oid' claim for the user's uid (uid_claim)"
    assert refused(claims(oid=7), provider) == "token claim 'oid' (uid_claim) is not a string"


def test_uid_can_be_left_out() -> None:
    provider = replace(PROVIDER, uid_claim="")
    assert claims_to_identity(claims(), provider).uid == ""


def test_extra_from_claims_list_or_string() -> None:
    provider = replace(
        PROVIDER,
        extra_claims=(
            ("example.com/tenant", "tenant"),
            ("example.com/teams", "org.teams"),
            ("example.com/absent", "nope"),
            ("example.com/empty", "empty"),
        ),
    )
    token_claims = claims(tenant="acme", org={"teams": ["red", "", "blue"]}, empty=[""])
    assert claims_to_identity(token_claims, provider).extra == (
        ("example.com/tenant", ("acme",)),
        ("example.com/teams", ("red", "blue")),  # as kube: empty strings dropped, empty keys too
    )


@pytest.mark.parametrize("value", [3, {"a": "b"}, ["a", 1], True])
def test_extra_claim_must_be_strings(value: object) -> None:
    provider = replace(PROVIDER, extra_claims=(("example.com/tenant", "tenant"),))
    assert refused(claims(tenant=value), provider) == (
        "token claim 'tenant' (extra 'example.com/tenant') is not a string or a list of strings"
    )


# --- required claims --------------------------------------------------------------------------


def test_required_claims_say_whether_missing_or_different() -> None:
    provider = replace(PROVIDER, required_claims=(("hd", "example.com"),))
    assert refused(claims(), provider) == "token has no 'hd' claim, which this provider requires"
    assert refused(claims(hd="evil.com"), provider) == (
        "token claim 'hd' does not have the required value"
    )
    assert claims_to_identity(claims(hd="example.com"), provider).username == "alice"


# --- user validation: the reserved system: prefix ---------------------------------------------


def test_system_username_is_refused() -> None:
    assert refused(claims(sub="system:admin")) == (
        "username 'system:admin' has the reserved 'system:' prefix (set a username_prefix / "
        "groups_prefix, or allow_system_prefix: true)"
    )


def test_system_group_is_refused_naming_it() -> None:
    assert refused(claims(groups=["dev", "system:masters"])) == (
        "group 'system:masters' has the reserved 'system:' prefix (set a username_prefix / "
        "groups_prefix, or allow_system_prefix: true)"
    )


def test_prefixes_take_names_out_of_system() -> None:
    provider = replace(PROVIDER, username_prefix="oidc:", groups_prefix="oidc:")
    identity = claims_to_identity(claims(sub="system:admin", groups="system:masters"), provider)
    assert identity.username == "oidc:system:admin"
    assert identity.groups == ("oidc:system:masters",)


def test_prefix_into_system_is_refused_too() -> None:
    provider = replace(PROVIDER, groups_prefix="system:")
    assert "group 'system:dev' has the reserved" in refused(claims(groups="dev"), provider)


def test_system_names_can_be_allowed() -> None:
    provider = replace(PROVIDER, allow_system_prefix=True)
    identity = claims_to_identity(claims(sub="system:admin", groups="system:masters"), provider)
    assert (identity.username, identity.groups) == ("system:admin", ("system:masters",))


# --- distributed claims -----------------------------------------------------------------------

OVERAGE = {
    "_claim_names": {"groups": "src1"},
    "_claim_sources": {
        "src1": {"endpoint": "https://graph.windows.net/tenant/users/oid/getMemberObjects"}
    },
}
DISTRIBUTED_GROUPS = (
    "the provider moved the token's 'groups' claim (the groups) to distributed claims "
    "(_claim_names, e.g. Azure AD group overage), which the gateway does not resolve; have the "
    "provider put it in the token itself (e.g. emit only the groups assigned to the application)"
)


def test_azure_group_overage_is_refused_never_read_as_no_groups() -> None:
    assert refused(claims(**OVERAGE)) == DISTRIBUTED_GROUPS


def test_aggregated_source_without_endpoint_is_refused_too() -> None:
    aggregated = {"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"JWT": "x"}}}
    assert refused(claims(**aggregated)) == DISTRIBUTED_GROUPS


def test_azure_hasgroups_is_refused() -> None:
    assert refused(claims(hasgroups=True)) == DISTRIBUTED_GROUPS


def test_groups_in_the_token_win_over_claim_names() -> None:
    identity = claims_to_identity(claims(groups=["dev"], **OVERAGE), PROVIDER)
    assert identity.groups == ("dev",)


def test_claim_names_for_other_claims_do_not_matter() -> None:
    other = {"_claim_names": {"roles": "src1"}, "_claim_sources": {"src1": {}}}
    assert claims_to_identity(claims(**other), PROVIDER).groups == ()


def test_distributed_dotted_groups_claim_is_refused() -> None:
    provider = replace(PROVIDER, groups_claim="realm_access.roles")
    token_claims = claims(_claim_names={"realm_access": "src1"}, _claim_sources={"src1": {}})
    assert "moved the token's 'realm_access.roles' claim" in refused(token_claims, provider)


def test_distributed_username_and_extra_are_refused() -> None:
    email = claims(_claim_names={"email": "s"}, _claim_sources={"s": {}})
    assert "moved the token's 'email' claim (the username)" in refused(email, EMAIL)
    provider = replace(PROVIDER, extra_claims=(("example.com/tenant", "tenant"),))
    tenant = claims(_claim_names={"tenant": "s"}, _claim_sources={"s": {}})
    assert "'tenant' claim (extra 'example.com/tenant')" in refused(tenant, provider)
