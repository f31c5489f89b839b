"""A general-purpose sensory lexicon and the cue patterns of the offline extractor.

The lexicon maps value phrases to their default facet (``"vanilla" -> scent``); the cues are the words that name
a facet in running text (``"... vanilla scent"``, ``"smells like ..."``, ``"material: ..."``). Neither is tuned to
one catalogue: the words are ordinary English product vocabulary (colours, fragrances, flavours, materials,
finishes, sizes, ...), so the same extractor serves the synthetic catalogue, beauty reviews and industrial
product descriptions. Values seen with an explicit cue elsewhere in the corpus extend the lexicon at run time
(see :mod:`sidrec.semantics.extract`).
"""

from __future__ import annotations

import re

# facet -> value phrases whose default facet it is (lower case; multi-word phrases allowed).
LEXICON: dict[str, tuple[str, ...]] = {
    "color": (
        "black", "white", "ivory", "cream", "beige", "tan", "brown", "chocolate brown", "gray", "grey",
        "charcoal", "silver", "gold", "golden", "rose gold", "bronze", "red", "burgundy", "maroon",
        "crimson", "pink", "blush pink", "hot pink", "magenta", "purple", "violet", "lilac", "lavender purple",
        "blue", "navy", "navy blue", "royal blue", "sky blue", "teal", "turquoise", "aqua", "green",
        "forest green", "sage green", "olive", "olive green", "mint green", "lime green", "yellow", "mustard",
        "orange", "coral", "peach", "amber", "clear", "transparent", "translucent", "multicolor", "nude",
        "khaki", "camel", "taupe", "off-white", "neon", "fluorescent",
    ),
    "scent": (
        "vanilla", "lavender", "sandalwood", "citrus", "pine", "rose", "jasmine", "bergamot", "mint", "peppermint",
        "spearmint", "eucalyptus", "cucumber", "aloe", "coconut", "lemon", "lime", "orange blossom", "grapefruit",
        "cedar", "cedarwood", "musk", "patchouli", "amber scent", "cinnamon", "ginger", "honey", "almond",
        "tea tree", "cocoa", "toasty", "floral", "fresh linen", "unscented", "fragrance-free", "fragrance free",
        "odorless", "odourless", "woody", "earthy scent", "rosemary", "sage", "chamomile", "gardenia",
        "lilac", "magnolia", "peony", "violet scent", "apple", "pumpkin spice", "vetiver", "oud", "citrusy",
    ),
    "taste": (
        "chocolate", "caramel", "fruity", "nutty", "smoky", "salty", "sweet", "spicy", "sour", "cheesy",
        "bitter", "savory", "savoury", "tangy", "zesty", "buttery", "earthy", "minty", "malty", "umami",
        "bold", "mild", "hot", "peppery", "garlicky", "herby", "sugary", "tart",
    ),
    "texture": (
        "creamy", "gel", "lightweight", "rich", "crunchy", "chewy", "crispy", "crisp", "soft", "chunky knit",
        "smooth", "silky", "velvety", "rough", "coarse", "fluffy", "plush", "grainy", "gritty", "sticky",
        "greasy", "oily", "non-greasy", "thick", "thin", "runny", "foamy", "powdery", "fuzzy", "stiff",
        "flexible", "rigid", "spongy", "elastic", "stretchy",
    ),
    "sound": (
        "bass-heavy", "bassy", "balanced", "bright", "warm", "crisp highs", "muddy", "tinny", "loud", "quiet",
        "silent", "noisy", "clear sound", "deep bass", "punchy", "noise-cancelling", "noise cancelling",
    ),
    "material": (
        "soy wax", "beeswax", "coconut wax", "paraffin", "aluminum", "aluminium", "plastic", "leather",
        "faux leather", "wool", "merino wool", "cotton", "organic cotton", "cashmere", "fleece", "polyester",
        "nylon", "silk", "linen", "denim", "cast iron", "stainless steel", "steel", "carbon steel", "ceramic",
        "copper", "brass", "iron", "titanium", "glass", "borosilicate glass", "wood", "bamboo", "rubber",
        "silicone", "nitrile", "latex", "vinyl", "pvc", "polypropylene", "polyethylene", "acrylic",
        "polycarbonate", "abs", "teflon", "ptfe", "fiberglass", "carbon fiber", "zinc", "nickel", "chrome",
        "tungsten", "porcelain", "stoneware", "marble", "granite", "paper", "cardboard", "foam", "neoprene",
        "kevlar", "epoxy", "resin", "canvas", "spandex", "rayon", "felt",
    ),
    "finish": (
        "matte", "glossy", "gloss", "satin", "enamel", "enameled", "brushed", "polished", "anodized",
        "powder coated", "powder-coated", "chrome plated", "galvanized", "lacquered", "textured", "frosted",
        "metallic", "pearlescent", "shiny", "hammered", "brushed nickel", "zinc plated", "nickel plated",
        "black oxide",
    ),
    "feel": (
        "cooling", "soothing", "warming", "tingling", "refreshing", "hydrating", "moisturizing", "numbing",
        "calming", "comfortable", "breathable", "cold", "icy", "heat-resistant", "insulated",
    ),
    "size": (
        "small", "medium", "large", "extra large", "x-large", "xl", "mini", "compact", "travel size",
        "family size", "snack pack", "single serve", "full size", "king size", "jumbo", "oversized", "petite",
        "heavy duty", "heavy-duty",
    ),
}

# Phrases in which a lexicon word is part of a product noun, not an attribute ("face cream" is no colour).
STOP_PHRASES: tuple[str, ...] = (
    "face cream", "hand cream", "body cream", "eye cream", "ice cream", "cream cheese", "sour cream",
    "night cream", "day cream", "shaving cream", "hot stuff", "hot glue", "hot water", "hot melt", "gold standard",
    "black & decker", "black and decker", "stanley black", "green tea", "black tea", "white tea", "orange peel",
    "rose gold tone", "warm white light", "small parts", "large parts", "clear coat", "hot plate", "iron man",
    "heavy duty narrow", "white paper", "glass jar", "paper towel", "sweet spot", "crisp clean",
    "color coded", "color-coded", "colour coded", "colour-coded", "color coding", "color-coding",
)

# facet -> words that name the facet in text.
CUE_WORDS: dict[str, tuple[str, ...]] = {
    "color": ("color", "colour", "colors", "colours", "shade", "hue", "tint"),
    "scent": ("scent", "scents", "smell", "smells", "fragrance", "aroma", "perfume", "odor", "odour"),
    "taste": ("flavor", "flavour", "flavors", "flavours", "taste", "tastes", "aftertaste"),
    "texture": ("texture", "consistency"),
    "sound": ("sound", "audio", "bass", "tone"),
    "material": ("material", "materials", "construction", "fabric", "made"),
    "finish": ("finish", "surface", "coating"),
    "feel": ("sensation", "feeling", "effect"),
    "size": ("size", "capacity", "weight", "volume", "dimensions"),
}

# Regexes whose ``value`` group is a facet value; ``facet`` is fixed per pattern or taken from a cue word.
_V = r"(?P<value>[a-z][a-z0-9\-']*(?: [a-z][a-z0-9\-']*){0,2})"
_NUM = r"(?<![\d/.])(?P<value>\d+(?:[./]\d+)?\s?(?:-\s?)?(?:g|gram|grams|kg|oz|ounce|ounces|lb|lbs|pound|pounds|ml|l|liter|litre|" \
       r"fl oz|gallon|gallons|quart|mm|cm|m|inch|inches|in|ft|foot|feet|count|ct|pack|pcs|pieces)\b)"
CUE_PATTERNS: tuple[tuple[str | None, str], ...] = (
    # "scent: vanilla", "Color - navy", "material = wool" (a bare hyphen joins words: "weight-bearing")
    (None, r"\b(?P<cue>{cues})(?:\s*[:=]\s*|\s+-\s+)" + _V),
    # "smells like vanilla", "smells of pine"
    ("scent", r"\bsmell(?:s|ed|ing)? (?:like|of) (?:a |an |the )?" + _V),
    ("taste", r"\btast(?:es|ed|ing) (?:like |of )?(?:a |an |the )?" + _V),
    ("material", r"\bmade (?:of|from|with|out of) (?:a |an |the |high[- ]quality |durable |premium |solid )?" + _V),
    ("material", r"\bgood quality " + _V),
    ("color", r"\blooks (?:great|good|nice|beautiful|lovely|amazing|stunning) in " + _V),
    ("color", r"\bcolou?r is (?:a |an )?(?:nice |lovely |beautiful |deep |rich |true )?" + _V),
    ("sound", r"\b(?:sound|audio)(?: is| comes across| quality is) (?:very |really |quite |pretty )?" + _V),
    ("texture", r"\btexture is (?:very |really |quite |nice and )?" + _V),
    ("texture", r"\bfeels " + _V + r" to the touch"),
    ("feel", r"\bfeels " + _V + r" on (?:the |my )?skin"),
    ("feel", r"\b(?:very |really |quite )?" + _V + r" when applied"),
    ("feel", r"\bleaves (?:a |an )?" + _V + r" (?:sensation|feeling|effect)"),
    ("finish", r"\b(?:has|with) (?:a |an )" + _V + r" finish"),
    ("size", r"\b" + _NUM),
)
# Cue words that follow their value ("vanilla scent", "matte finish"): the value is the run of words before them.
# Not those that mostly head noun compounds ("surface temperature", "weight capacity", "volume control").
TRAILING_CUES: dict[str, str] = {w: f for f, ws in CUE_WORDS.items() for w in ws
                                 if w not in ("made", "bass", "tone", "weight", "effect", "feeling", "smells",
                                              "tastes", "volume", "construction", "surface")}
TRAILING_CUES.update({"construction": "material", "sensation": "feel"})

# Words that end a value phrase going backwards from a trailing cue ("Love the [vanilla] scent").
STOPWORDS: frozenset[str] = frozenset("""
a an the this that these those its it it's my your our their his her and or but with without for of to in on at by
from is are was were be been very really quite so too nice great good lovely beautiful amazing perfect pleasant
love loved like likes liked the best better strong light subtle mild slight overall real true natural fresh new
favorite favourite wonderful awesome excellent fantastic decent okay ok fine bad poor terrible horrible weird odd
strange different same little bit lot much more most less least no not any some all every each has have had
spot on right
""".split())
# Facets whose values are things, not qualities: a cue for them accepts only their own lexicon words (or, for
# material, open vocabulary), never another facet's ("thick material", "cooling capacity").
CONCRETE_FACETS: frozenset[str] = frozenset({"material", "size"})
# Facets whose free-form (non-lexicon) values we accept from cues; sizes need numbers or lexicon words.
OPEN_VOCAB_FACETS: frozenset[str] = frozenset({"color", "scent", "taste", "texture", "sound", "material", "finish",
                                               "feel"})

SYNONYMS: dict[str, str] = {
    "grey": "gray", "colour": "color", "aluminium": "aluminum", "savoury": "savory", "odourless": "odorless",
    "fragrance free": "unscented", "fragrance-free": "unscented", "heavy-duty": "heavy duty",
    "powder-coated": "powder coated", "noise cancelling": "noise-cancelling", "gloss": "glossy",
    "enameled": "enamel", "amber scent": "amber", "violet scent": "violet", "clear sound": "clear",
    "earthy scent": "earthy", "lavender purple": "lavender",
}


def normalise_value(value: str) -> str:
    """Lower-case, collapse spaces, trim punctuation and map spelling variants (``"Grey" -> "gray"``)."""
    value = re.sub(r"\s+", " ", value.lower()).strip(" .,;:!?'\"()[]{}-")
    value = re.sub(r"\s*-\s*", "-", value) if re.search(r"[a-z]-[a-z]", value) else value
    return SYNONYMS.get(value, value)


def lexicon_index() -> dict[str, str]:
    """value phrase (normalised) -> default facet."""
    out: dict[str, str] = {}
    for facet, values in LEXICON.items():
        for v in values:
            out.setdefault(normalise_value(v), facet)
    return out
