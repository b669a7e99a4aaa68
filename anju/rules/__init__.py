"""Rules: definitions as data, the safe expression compiler, the vectorised engine and its
scalar reference."""

from anju.rules.engine import RuleEngine
from anju.rules.model import CompiledRule, RuleDef, RuleSet, load_rules
from anju.rules.reference import ReferenceEngine
from anju.rules.transition import Transition

__all__ = [
    "CompiledRule",
    "ReferenceEngine",
    "RuleDef",
    "RuleEngine",
    "RuleSet",
    "Transition",
    "load_rules",
]
