"""Scores of extracted sensory attributes against ground truth (ASEGR's two metrics).

**Facet-selection accuracy** (multi-label, example-based; Godbole & Sarawagi 2004): per item, the Jaccard index
``|P & G| / |P | G|`` between the predicted facet set P and the true facet set G (1 when both are empty), averaged
over items. Predicting every facet or none is penalised, unlike per-(item, facet) binary accuracy (also reported,
as ``facet_binary_accuracy``, with exact-set match as ``facet_exact_match``).

**Value F1 at cosine tau** (micro-averaged; tau = 0.6 as in ASEGR): a predicted pair (f, v) matches a true pair
(f, g) of the same item when the facets are equal and ``cos(E(v), E(g)) >= tau``, E being the value encoder (the
text encoder on the bare value string; a student predicts E(v) directly). Each true pair is matched at most once.
Precision = matched / predicted pairs, recall = matched / true pairs, F1 their harmonic mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from sidrec.facets import FACET_NAMES

# item -> facet -> value string (truth: one value per facet; predictions: values best first).
Truth = Mapping[str, Mapping[str, str]]


def facet_selection_scores(predicted: Mapping[str, Sequence[str]], truth: Truth) -> dict[str, float]:
    """Facet-selection accuracy (mean Jaccard), exact-set match and binary accuracy over ``truth``'s items.

    ``predicted`` maps item -> predicted facet names (an item missing from it predicted nothing).
    """
    jac, exact, binary = [], [], []
    for item, gold in truth.items():
        p, g = set(predicted.get(item, ())), set(gold)
        union = p | g
        jac.append(len(p & g) / len(union) if union else 1.0)
        exact.append(float(p == g))
        binary.append(np.mean([(f in p) == (f in g) for f in FACET_NAMES]))
    return {"facet_accuracy": float(np.mean(jac)), "facet_exact_match": float(np.mean(exact)),
            "facet_binary_accuracy": float(np.mean(binary)), "n_items": len(truth)}


def value_f1(predicted: Mapping[str, Mapping[str, np.ndarray]], truth: Truth,
             encode: Callable[[list[str]], np.ndarray], tau: float = 0.6) -> dict[str, float]:
    """Micro precision / recall / F1 of (facet, value) pairs at cosine ``tau``.

    ``predicted`` maps item -> facet -> predicted value vectors ``(n_values, dim)`` in the space of ``encode``
    (which maps strings to L2-normalised rows). A true pair counts once even if several predictions match it.
    """
    gold_values = sorted({v for attrs in truth.values() for v in attrs.values()})
    gold_emb = dict(zip(gold_values, encode(gold_values))) if gold_values else {}
    n_pred = n_true = matched_pred = matched_true = 0
    for item, gold in truth.items():
        pred = predicted.get(item, {})
        n_true += len(gold)
        n_pred += sum(len(v) for v in pred.values())
        for facet, vecs in pred.items():
            if facet not in gold or len(vecs) == 0:
                continue
            vecs = np.asarray(vecs, dtype=np.float32).reshape(len(vecs), -1)
            vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            cos = vecs @ gold_emb[gold[facet]]
            hits = int((cos >= tau).sum())
            matched_pred += hits
            matched_true += int(hits > 0)
    precision = matched_pred / n_pred if n_pred else 0.0
    recall = matched_true / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"value_precision": precision, "value_recall": recall, "value_f1": f1, "tau": tau,
            "n_predicted_pairs": n_pred, "n_true_pairs": n_true}


def score_string_attributes(predicted: Mapping[str, Mapping[str, Sequence[str]]], truth: Truth,
                            encode: Callable[[list[str]], np.ndarray], tau: float = 0.6) -> dict[str, float]:
    """Both metrics for an extractor whose values are strings (embedded with ``encode``)."""
    values = sorted({v for attrs in predicted.values() for vs in attrs.values() for v in vs})
    emb = dict(zip(values, encode(values))) if values else {}
    vec_pred = {item: {f: np.stack([emb[v] for v in vs]) for f, vs in attrs.items() if vs}
                for item, attrs in predicted.items()}
    return {**facet_selection_scores({i: list(a) for i, a in predicted.items()}, truth),
            **value_f1(vec_pred, truth, encode, tau)}
