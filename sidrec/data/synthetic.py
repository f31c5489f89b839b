"""An offline synthetic catalogue with real structure, for the demo and the tests.

Items belong to categories; each has one true value per facet of its category (``scent: vanilla``), a title and a
description built from those values, and reviews that mention them. Users have latent preferences (a category mix
and a preferred value per facet) and their sequences follow item-to-item transitions (each item has a few
successors: the next item of a "series"), so a model that reads item text and order beats popularity, while the
ground-truth attributes let the sensory extractor be scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sidrec.data.sources import RawDataset, make_item
from sidrec.data.split import UserSequence


@dataclass(frozen=True)
class Category:
    name: str
    nouns: tuple[str, ...]
    brands: tuple[str, ...]
    facets: dict[str, tuple[str, ...]]
    price: float


CATEGORIES: tuple[Category, ...] = (
    Category("Candles", ("candle", "jar candle", "pillar candle"), ("Lumen", "Hearthglow", "Wickwell"),
             {"scent": ("vanilla", "lavender", "sandalwood", "citrus", "pine"),
              "color": ("ivory", "amber", "sage green", "blush pink"),
              "material": ("soy wax", "beeswax", "coconut wax")}, 18.0),
    Category("Coffee", ("coffee beans", "ground coffee", "espresso roast"), ("Roastery Nine", "Bean & Co", "Altura"),
             {"taste": ("chocolate", "caramel", "fruity", "nutty", "smoky"),
              "scent": ("toasty", "floral", "cocoa"),
              "size": ("250 g", "500 g", "1 kg")}, 14.0),
    Category("Headphones", ("headphones", "earbuds", "headset"), ("Sonora", "Decibelle", "Quietline"),
             {"sound": ("bass-heavy", "balanced", "bright", "warm"),
              "color": ("black", "white", "navy", "silver"),
              "material": ("aluminum", "plastic", "leather")}, 80.0),
    Category("Skincare", ("face cream", "serum", "moisturizer"), ("Dermalia", "Petal & Pure", "Glowlab"),
             {"scent": ("unscented", "rose", "cucumber", "aloe"),
              "texture": ("creamy", "gel", "lightweight", "rich"),
              "feel": ("cooling", "soothing", "warming")}, 25.0),
    Category("Snacks", ("chips", "crackers", "trail mix"), ("Crunchtown", "Good Grain", "Snackery"),
             {"taste": ("salty", "sweet", "spicy", "sour", "cheesy"),
              "texture": ("crunchy", "chewy", "crispy"),
              "size": ("family size", "snack pack", "single serve")}, 6.0),
    Category("Sweaters", ("sweater", "cardigan", "pullover"), ("Northknit", "Woolhaus", "Fernfield"),
             {"color": ("charcoal", "cream", "burgundy", "forest green", "navy"),
              "material": ("wool", "cotton", "cashmere", "fleece"),
              "texture": ("soft", "chunky knit", "smooth")}, 45.0),
    Category("Cookware", ("skillet", "saucepan", "dutch oven"), ("Ironclad", "Chefwell", "Copperleaf"),
             {"material": ("cast iron", "stainless steel", "ceramic", "copper"),
              "finish": ("matte", "glossy", "enamel", "brushed"),
              "size": ("small", "medium", "large")}, 55.0),
    Category("Tea", ("loose leaf tea", "tea bags", "herbal tea"), ("Leaf & Kettle", "Teaworks", "Misty Peak"),
             {"taste": ("floral", "earthy", "minty", "smoky", "fruity"),
              "scent": ("jasmine", "bergamot", "mint", "ginger"),
              "color": ("green", "black", "golden")}, 12.0),
)

FACET_REVIEW_TEMPLATES: dict[str, tuple[str, ...]] = {
    "scent": ("Love the {v} scent.", "It smells like {v}, really pleasant.", "The {v} fragrance is lovely."),
    "taste": ("Great {v} flavor.", "Tastes {v} and fresh.", "The {v} taste is spot on."),
    "texture": ("The texture is {v}.", "Nice {v} texture.", "Feels {v} to the touch."),
    "sound": ("The sound is {v}.", "Very {v} sound for the price.", "Audio comes across {v}."),
    "color": ("The {v} color is beautiful.", "Color is a nice {v}.", "Looks great in {v}."),
    "material": ("Made of {v}, feels solid.", "Good quality {v}.", "The {v} construction holds up."),
    "finish": ("The {v} finish looks premium.", "Has a {v} finish.", "Nice {v} surface."),
    "feel": ("It feels {v} on the skin.", "Very {v} when applied.", "Leaves a {v} sensation."),
    "size": ("The {v} is the right amount.", "Bought the {v}.", "Size: {v}, as described."),
}
FILLER = ("Arrived quickly.", "Would buy again.", "Good value.", "Packaging was fine.", "Recommended.",
          "Exactly what I wanted.", "A bit pricey but worth it.")
DESCRIPTION_OPENERS = ("A customer favourite:", "Crafted with care.", "Everyday essential.", "New and improved.")


def generate_synthetic(n_users: int = 1000, n_items: int = 300, seed: int = 0, min_len: int = 5,
                       max_len: int = 20, review_prob: float = 0.7) -> RawDataset:
    """Generate a seeded synthetic catalogue; returns items, reviews, sequences and ground-truth attributes."""
    rng = np.random.default_rng(seed)
    n_cat = len(CATEGORIES)
    items: dict[str, dict] = {}
    truth: dict[str, dict[str, str]] = {}
    item_cat = np.empty(n_items, dtype=np.int64)
    item_attrs: list[dict[str, str]] = []
    for idx in range(n_items):
        ci = idx % n_cat
        cat = CATEGORIES[ci]
        attrs = {f: str(rng.choice(vals)) for f, vals in cat.facets.items()}
        noun = str(rng.choice(cat.nouns))
        brand = str(rng.choice(cat.brands))
        facet_list = list(attrs)
        title_vals = [attrs[f] for f in facet_list[:2]]
        title = f"{brand} {' '.join(v.title() for v in title_vals)} {noun.title()} #{idx}"
        mentioned = rng.choice(len(facet_list), size=2, replace=False)
        desc_bits = [f"{facet_list[j]}: {attrs[facet_list[j]]}" for j in sorted(mentioned)]
        description = f"{rng.choice(DESCRIPTION_OPENERS)} A {noun} by {brand} with {' and '.join(desc_bits)}."
        item_id = f"S{idx:05d}"
        items[item_id] = make_item(item_id, title, description, [cat.name], brand,
                                   round(float(cat.price * rng.lognormal(0, 0.3)), 2))
        truth[item_id] = attrs
        item_cat[idx] = ci
        item_attrs.append(attrs)
    item_ids = list(items)

    # Zipf-like base popularity, and a few "series" successors per item (same category, shared attributes).
    base_pop = 1.0 / (1 + rng.permutation(n_items)) ** 0.6
    successors: list[np.ndarray] = []
    for idx in range(n_items):
        same = np.flatnonzero(item_cat == item_cat[idx])
        same = same[same != idx]
        shared = np.array([sum(item_attrs[j][f] == v for f, v in item_attrs[idx].items()) for j in same])
        w = np.exp(1.5 * shared)
        successors.append(rng.choice(same, size=min(3, len(same)), replace=False, p=w / w.sum()))

    # Precompute, per facet value, which items carry it (for preference scores).
    sequences, reviews = [], []
    for u in range(n_users):
        cat_pref = rng.dirichlet(np.full(n_cat, 0.3))
        value_pref = {f: str(rng.choice(vals)) for c in CATEGORIES for f, vals in c.facets.items()}
        match = np.array([sum(value_pref.get(f) == v for f, v in a.items()) for a in item_attrs], dtype=float)
        logits = np.log(cat_pref[item_cat] + 1e-6) + 1.2 * match + 0.8 * np.log(base_pop)
        length = int(min(max_len, min_len + rng.geometric(0.2) - 1))
        seen: list[int] = []
        for _ in range(length):
            if seen and rng.random() < 0.55:
                cand = [j for j in successors[seen[-1]] if j not in seen]
                if cand:
                    seen.append(int(cand[0] if rng.random() < 0.7 else rng.choice(cand)))
                    continue
            p = np.exp(logits - logits.max())
            p[seen] = 0.0
            p /= p.sum()
            seen.append(int(rng.choice(n_items, p=p)))
        user_id = f"U{u:05d}"
        t0 = int(1_600_000_000 + rng.integers(0, 30_000_000))
        stamps = [t0 + 86_400 * (k * 3 + int(rng.integers(0, 3))) for k in range(len(seen))]
        sequences.append(UserSequence(user_id, [item_ids[j] for j in seen], stamps))
        for j, ts in zip(seen, stamps):
            if rng.random() > review_prob:
                continue
            facets = list(item_attrs[j])
            k = int(rng.integers(1, 3))
            picked = rng.choice(len(facets), size=k, replace=False)
            parts = [str(rng.choice(FACET_REVIEW_TEMPLATES[facets[p]])).format(v=item_attrs[j][facets[p]])
                     for p in picked]
            parts.append(str(rng.choice(FILLER)))
            rng.shuffle(parts)
            reviews.append({"user_id": user_id, "item_id": item_ids[j], "rating": float(rng.integers(3, 6)),
                            "text": " ".join(parts), "timestamp": ts})
    return RawDataset(items, reviews, sequences, ground_truth={"attributes": truth},
                      notes=[f"synthetic catalogue: seed {seed}, {n_users} users, {n_items} items"])


# ---- a non-circular check of sensory extraction (issue 19) ------------------------------------------------------------
# The reviews above use FACET_REVIEW_TEMPLATES, from which the offline extractor's first cue rules were written, and
# only lexicon values: the extractor inverts them by construction. The check below writes reviews from a separate
# phrasing bank (paraphrases, misspelt facet words, distractor sentences that use facet words in another sense,
# negated mentions of another value) and draws about a third of the values from HELD_OUT_VALUES, which the
# extractor's lexicon does not contain (tests/test_sensory_dev.py checks both).
HELD_OUT_VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    "Candles": {"scent": ("fig", "tonka", "sea breeze"), "color": ("periwinkle", "terracotta"),
                "material": ("palm wax",)},
    "Coffee": {"taste": ("molasses", "toffee", "winey"), "scent": ("bready", "roasty"), "size": ("bulk bag",)},
    "Headphones": {"sound": ("sibilant", "veiled"), "color": ("gunmetal", "slate"), "material": ("magnesium",)},
    "Skincare": {"scent": ("yuzu", "oat"), "texture": ("jelly", "balmy"), "feel": ("prickly",)},
    "Snacks": {"taste": ("vinegary", "ranch", "lime chili"), "texture": ("puffy",), "size": ("party size",)},
    "Sweaters": {"color": ("oatmeal", "heather", "mulberry"), "material": ("alpaca", "mohair"),
                 "texture": ("ribbed",)},
    "Cookware": {"material": ("tri-ply", "soapstone"), "finish": ("seasoned", "speckled"), "size": ("extra deep",)},
    "Tea": {"taste": ("grassy", "honeyed", "toasty malt"), "scent": ("osmanthus", "hay"), "color": ("straw",)},
}

PARAPHRASE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "scent": ("Whiff of {v} the moment you open it.", "Gives off {v} notes all day.", "Smel of {v} is strong.",
              "Picked up {v} right away from the box.", "Reminds me of {v}, in a good way."),
    "taste": ("First sip: {v}.", "Really {v} on the palate.", "Flavour leans {v}.", "Tastes kinda {v} to me.",
              "Lots of {v} going on."),
    "texture": ("Kind of {v} between the fingers.", "Texure is {v}.", "Comes out {v}.",
                "Surprisingly {v} once you open it."),
    "sound": ("Music comes through {v}.", "Pretty {v} for vocals and guitars.", "Sonically it is {v}.",
              "Overall signature: {v}."),
    "color": ("Mine came in {v}.", "Picked the {v} one.", "Went with {v} this time.", "Colr: {v}, matches the photo."),
    "material": ("Built from {v}.", "The body is {v}.", "Real {v}, not a cheap blend.", "Crafted in {v}."),
    "finish": ("Outside is {v}.", "Surface looks {v}.", "Has this {v} look I like."),
    "feel": ("Goes on {v}.", "Noticeably {v} after a minute.", "Kind of {v} when it hits the skin."),
    "size": ("Ordered the {v}.", "Went for {v}.", "The {v} version arrived."),
}
NEGATED_TEMPLATES: tuple[str, ...] = ("Not {v} at all, despite the listing.", "There is no {v} in it that I can tell.")
DISTRACTORS: tuple[str, ...] = (
    "I felt it was worth every penny.", "Cold weather delayed the delivery.", "Sounds like a good deal to me.",
    "It rose to the top of my list.", "Small business, fast shipping.", "Got it on a hot day, box was fine.",
    "My sister has the same one.", "Will order again.",
)


def generate_sensory_check(n_items: int = 300, seed: int = 0, held_out_share: float = 1 / 3,
                           reviews_per_item: int = 3) -> tuple[list[dict], dict[str, dict[str, str]], set[str]]:
    """Items with paraphrased reviews and true attributes for the non-circular sensory check.

    Returns ``(items, truth, held_out)``: items are ``{"item_id", "title", "description", "reviews"}``; truth is
    ``item -> facet -> value``; held_out is the set of values drawn from HELD_OUT_VALUES (about ``held_out_share`` of
    the item-facet pairs). Titles name the brand and noun only; the description names one value in prose.
    """
    rng = np.random.default_rng(seed)
    items, truth, held = [], {}, set()
    for idx in range(n_items):
        cat = CATEGORIES[idx % len(CATEGORIES)]
        attrs = {}
        for facet, seen_values in cat.facets.items():
            pool = HELD_OUT_VALUES[cat.name].get(facet, ())
            use_held = pool and rng.random() < held_out_share
            attrs[facet] = str(rng.choice(pool if use_held else seen_values))
            if use_held:
                held.add(attrs[facet])
        item_id = f"H{idx:05d}"
        noun, brand = str(rng.choice(cat.nouns)), str(rng.choice(cat.brands))
        facets = list(attrs)
        reviews = []
        for _ in range(reviews_per_item):
            parts = []
            for j in rng.choice(len(facets), size=int(rng.integers(1, 3)), replace=False):
                value = attrs[facets[j]]
                text = str(rng.choice(PARAPHRASE_TEMPLATES[facets[j]])).format(v=value)
                parts.append(text[0].upper() + text[1:])
            if rng.random() < 0.4:  # a negated mention of another value of one of the item's facets
                facet = facets[int(rng.integers(len(facets)))]
                others = [v for v in cat.facets[facet] if v != attrs[facet]]
                parts.append(str(rng.choice(NEGATED_TEMPLATES)).format(v=str(rng.choice(others))))
            parts.append(str(rng.choice(DISTRACTORS)))
            rng.shuffle(parts)
            reviews.append(" ".join(parts))
        lead = facets[int(rng.integers(len(facets)))]
        description = f"{brand} {noun}. " + str(rng.choice(PARAPHRASE_TEMPLATES[lead])).format(v=attrs[lead])
        items.append({"item_id": item_id, "title": f"{brand} {noun.title()} #{idx}", "description": description,
                      "reviews": reviews})
        truth[item_id] = attrs
    return items, truth, held
