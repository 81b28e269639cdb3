"""MAE-NAS: zero-training backbone search under params, FLOPs, depth and latency budgets.

``space`` says which structures exist and how one mutates, ``ops`` lists the deploy convs a
structure becomes, ``budgets`` prices it, ``score`` rates it without training, ``latency_lut``
times it on this device and ``search`` runs the evolution.
"""

from damo_core.nas.budgets import BudgetError, Budgets
from damo_core.nas.search import SearchConfig, SearchResult, run_search
from damo_core.nas.space import SPACES, SearchSpace

__all__ = ["SPACES", "BudgetError", "Budgets", "SearchConfig", "SearchResult", "SearchSpace",
           "run_search"]
