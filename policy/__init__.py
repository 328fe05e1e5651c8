"""Pure authorization decisions: identities, the policy model, the compiled matcher.

No I/O and no clock: a decision is a function of (identity, connection, attributes).
"""

from policy.decision import Decision
from policy.engine import PolicySet, rule_matches
from policy.identity import Identity
from policy.model import Policy, Rule

__all__ = ["Decision", "Identity", "Policy", "PolicySet", "Rule", "rule_matches"]
