"""The rule catalogue, one module per code family, in code order.

Importing this package registers every rule into :data:`dpodoctor.rules.RULES`; :mod:`dpodoctor.rules` keeps the
engine (registry, decorator, context, absorption of symptoms into causes) and imports this package at its end.
"""

from dpodoctor.checks import accuracy, evaluation, gradients, integrity, loss, margins, rewards

__all__ = ["accuracy", "evaluation", "gradients", "integrity", "loss", "margins", "rewards"]
