"""The sensory facet schema shared by the synthetic catalogue, the sensory teacher/student and explanations.

ASEGR (sensory attribute extraction for generative recommendation) works over a fixed set of facets; a pair such
as ``scent: vanilla`` is a facet and a normalised value.
"""

from __future__ import annotations

FACETS: dict[str, str] = {
    "color": "visible colour or shade",
    "scent": "smell or fragrance",
    "taste": "flavour",
    "texture": "how the surface or substance feels to touch or in the mouth",
    "sound": "how it sounds",
    "material": "what it is made of",
    "finish": "surface finish or appearance",
    "feel": "temperature or sensation in use",
    "size": "size, weight or capacity",
}

FACET_NAMES: tuple[str, ...] = tuple(FACETS)
