"""Stage ``baseline``: discriminative sequential recommenders (SASRec, BERT4Rec, BSARec, GRU4Rec) with item-ID
or semantic fusion inputs (asegr, llmesr, said, guided), plus popularity and random sanity baselines.

Every model ranks the whole catalogue for each evaluation sample and writes the shared predictions format.
"""

from sidrec.baselines.config import BaselineConfig
from sidrec.baselines.train import train_baseline

__all__ = ["BaselineConfig", "train_baseline"]
