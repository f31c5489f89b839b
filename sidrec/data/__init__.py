"""Stage ``prepare``: raw sources -> one canonical item table, reviews, user sequences and splits."""

from sidrec.data.prepare import PrepareConfig, prepare
from sidrec.data.store import CanonicalData, load_data
from sidrec.data.synthetic import generate_synthetic

__all__ = ["CanonicalData", "PrepareConfig", "generate_synthetic", "load_data", "prepare"]
