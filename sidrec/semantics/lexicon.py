"""A general-purpose sensory lexicon and the cue patterns of the offline extractor.

The lexicon maps value phrases to their default facet (``"vanilla" -> scent``); the cues are the words that name
a facet in running text (``"... vanilla scent"``, ``"smells like ..."``, ``"material: ..."``). Neither is tuned to
one catalogue: the words are ordinary English product vocabulary (colours, fragrances, flavours, materials,
finishes, sizes, ...), so the same extractor serves the synthetic catalogue, beauty reviews and industrial
product descriptions. Values seen with an explicit cue elsewhere in the corpus extend the lexicon at run time
(see :mod:`sidrec.semantics.extract`).

Beside the words, the module holds the closed-class word lists the extractor uses as light part-of-speech cues
(pronouns, auxiliaries, negators, judgement adjectives): a facet word used as a verb ("I felt", "it rose"), in a
negated phrase ("not greasy") or describing something else ("cold weather") is not a value. The cue patterns are
generic English around a facet word ("the scent is ...", "smells of ...", "made of ..."); none copies a phrasing
of the synthetic generator (tests/test_sensory_dev.py checks this against sidrec/data/synthetic.py).
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
        "khaki", "camel", "taupe", "off-white", "neon", "fluorescent", "carmine", "cobalt", "cobalt blue",
        "scarlet", "fuchsia", "mauve", "plum", "emerald", "jade", "indigo", "cyan", "champagne", "mocha", "auburn",
        "rust", "ruby", "berry", "wine", "blonde", "ash blonde", "brunette", "tortoiseshell",
    ),
    "scent": (
        "vanilla", "lavender", "sandalwood", "citrus", "pine", "rose", "jasmine", "bergamot", "mint", "peppermint",
        "spearmint", "eucalyptus", "cucumber", "aloe", "coconut", "lemon", "lime", "orange blossom", "grapefruit",
        "cedar", "cedarwood", "musk", "patchouli", "amber scent", "cinnamon", "ginger", "honey", "almond",
        "tea tree", "cocoa", "toasty", "floral", "fresh linen", "unscented", "fragrance-free", "fragrance free",
        "odorless", "odourless", "woody", "earthy scent", "rosemary", "sage", "chamomile", "gardenia",
        "lilac", "magnolia", "peony", "violet scent", "apple", "pumpkin spice", "vetiver", "oud", "citrusy",
        "musky", "powdery scent", "fruity scent", "baby powder", "grape", "cherry", "strawberry", "orchid",
        "tuberose", "freesia", "ylang ylang", "neroli", "frankincense", "menthol", "camphor", "licorice",
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
        "flexible", "rigid", "spongy", "elastic", "stretchy", "mousse", "liquid", "foaming", "loose powder",
        "pressed powder", "watery", "waxy", "whipped", "airy", "gooey", "slippery", "velvet",
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
        "kevlar", "epoxy", "resin", "canvas", "spandex", "rayon", "felt", "cloth", "metal", "wire mesh",
        "mesh", "satin", "velour", "suede", "jute", "hemp", "cork", "tin", "pewter", "graphite", "foil",
        "shea butter", "cocoa butter", "mango butter", "beeswax", "clay", "charcoal powder", "himalayan salt",
        "sea salt", "polyurethane", "polyester felt", "pla", "abs plastic", "pvc plastic", "hdpe", "ldpe",
        "polystyrene", "styrofoam", "sterling silver", "stainless", "chrome oxide", "silica gel", "gold plated",
    ),
    "finish": (
        "matte", "glossy", "gloss", "satin", "enamel", "enameled", "brushed", "polished", "anodized",
        "powder coated", "powder-coated", "chrome plated", "galvanized", "lacquered", "textured", "frosted",
        "metallic", "pearlescent", "shiny", "hammered", "brushed nickel", "zinc plated", "nickel plated",
        "black oxide", "reflective", "glitter", "shimmer", "sparkly", "iridescent", "holographic", "sheer",
        "dewy", "luminous", "wet look", "semi-gloss", "high gloss", "singed", "gold-plated", "silver-plated",
    ),
    "feel": (
        "cooling", "soothing", "warming", "tingling", "refreshing", "hydrating", "moisturizing", "numbing",
        "calming", "comfortable", "breathable", "cold", "icy", "heat-resistant", "insulated", "hot",
    ),
    "size": (
        "small", "medium", "large", "extra large", "x-large", "xl", "mini", "compact", "travel size",
        "family size", "snack pack", "single serve", "full size", "king size", "jumbo", "oversized", "petite",
        "heavy duty", "heavy-duty", "long", "short", "tiny", "huge", "big",
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
    "size": ("size", "capacity", "weight", "volume", "dimensions", "length"),
}

# Cue words that follow their value ("vanilla scent", "matte finish"): the value is the run of words before them.
# Not those that mostly head noun compounds ("surface temperature", "weight capacity", "volume control").
TRAILING_CUES: dict[str, str] = {w: f for f, ws in CUE_WORDS.items() for w in ws
                                 if w not in ("made", "bass", "tone", "weight", "effect", "feeling", "smells",
                                              "tastes", "volume", "construction", "surface")}
TRAILING_CUES.update({"construction": "material", "sensation": "feel"})

# Words that put a sentence in a facet's context (a superset of the cue words): a value that can belong to several
# facets ("crisp", "rose", "warm") takes the facet whose context words its sentence holds ("recordings are crisp").
CONTEXT_WORDS: dict[str, tuple[str, ...]] = {
    "color": ("color", "colour", "colors", "colours", "shade", "shades", "hue", "tint", "pigment", "pigmented",
              "lipstick", "lipcolour", "lipcolor", "polish", "lacquer", "eyeshadow", "eyeliner", "mascara", "blush"),
    "scent": ("scent", "scents", "scented", "smell", "smells", "smelled", "smelling", "fragrance", "fragrant",
              "aroma", "perfume", "odor", "odour", "notes", "nose", "whiff", "sniff"),
    "taste": ("flavor", "flavour", "flavors", "flavours", "taste", "tastes", "tasted", "aftertaste", "palate"),
    "texture": ("texture", "consistency", "touch"),
    "sound": ("sound", "sounds", "audio", "bass", "tone", "treble", "highs", "mids", "recording", "recordings",
              "music", "vocals", "speaker", "speakers", "noise"),
    "material": ("material", "materials", "fabric", "construction", "made"),
    "finish": ("finish", "surface", "coating", "sheen"),
    "feel": ("skin", "sensation", "feeling", "tingle", "applied", "application", "apply", "scalp", "lips"),
    "size": ("size", "capacity", "weight", "volume", "dimensions", "length"),
}

# Values that name a quality of several facets; when the sentence gives no context, the first listed is used.
SENSES: dict[str, tuple[str, ...]] = {
    "rose": ("scent", "color"), "lavender": ("scent", "color"), "lilac": ("scent", "color"),
    "violet": ("color", "scent"), "peach": ("color", "scent", "taste"), "amber": ("color", "scent"),
    "orange": ("color", "scent", "taste"), "mint": ("scent", "taste", "color"), "cream": ("color", "texture"),
    "chocolate": ("taste", "color", "scent"), "caramel": ("taste", "color", "scent"), "honey": ("scent", "taste",
                                                                                               "color"),
    "vanilla": ("scent", "taste"), "cocoa": ("scent", "taste"), "coconut": ("scent", "taste"),
    "almond": ("scent", "taste", "color"), "lemon": ("scent", "taste"), "cinnamon": ("scent", "taste"),
    "ginger": ("scent", "taste"), "cherry": ("scent", "taste", "color"), "berry": ("color", "taste", "scent"),
    "grape": ("scent", "taste"), "apple": ("scent", "taste"), "strawberry": ("scent", "taste"),
    "plum": ("color", "scent"), "wine": ("color", "taste"), "clear": ("color", "sound"),
    "warm": ("sound", "feel", "color"), "cool": ("feel", "color"), "bright": ("sound", "color"),
    "crisp": ("sound", "texture", "taste"), "rich": ("texture", "taste", "sound"),
    "smooth": ("texture", "finish", "sound", "taste"), "soft": ("texture", "sound"),
    "silver": ("color", "material", "finish"), "gold": ("color", "material", "finish"),
    "copper": ("material", "color"), "bronze": ("color", "material"), "satin": ("finish", "material"),
    "silk": ("material", "texture"), "velvet": ("texture", "material"), "metallic": ("finish", "color"),
    "sweet": ("taste", "scent"), "fruity": ("taste", "scent"), "floral": ("scent", "taste"),
    "earthy": ("taste", "scent"), "woody": ("scent", "taste"), "smoky": ("taste", "scent"),
    "spicy": ("taste", "scent"), "musky": ("scent",), "powdery": ("texture", "scent"),
    "light": ("size", "texture", "color"), "heavy": ("size", "texture", "scent"), "cold": ("feel",),
    "hot": ("feel", "taste", "color"), "icy": ("feel",), "thin": ("texture", "size"), "thick": ("texture", "size"),
}

# Words too ambiguous to count without a cue or their facet's context in the sentence ("cold weather", "a rich
# lather", "bright idea", "light use"), and words that are vague or an effect on the body ("comfortable",
# "moisturizing"): the labelling rules of issue 19 do not count them as attributes of the product.
NEEDS_CONTEXT: frozenset[str] = frozenset({
    "warm", "cool", "cold", "hot", "icy", "bright", "clear", "crisp", "rich", "light", "heavy", "bold", "mild",
    "balanced", "loud", "quiet", "silent", "noisy", "punchy", "muddy", "sweet", "sour", "bitter", "salty", "spicy",
    "tart", "comfortable", "soothing", "calming", "hydrating", "moisturizing", "refreshing", "breathable",
    "insulated", "heat-resistant", "long", "short", "big", "huge", "tiny", "rough", "thin", "thick",
    "cooling", "warming", "tingling", "numbing", "sage", "tan", "rust", "wine", "berry", "plum", "jade", "ruby",
    "honey", "apple", "orange", "lime", "pine", "ginger", "almond", "cherry", "grape", "strawberry", "peach",
    "chocolate", "caramel", "cream", "earthy", "nutty", "smoky", "fruity", "floral", "woody", "musky",
    "minty", "neon", "nude", "mini", "medium", "petite",
})
# ...unless the text is a product title: there a bare word names the product ("Conair Compact Hairsetter, Blue").
TITLE_OK: frozenset[str] = frozenset({"medium", "mini", "petite", "nude", "clear", "cream",
                                      "sage", "tan", "chocolate", "caramel", "honey", "orange", "cherry", "grape",
                                      "strawberry", "peach", "almond", "plum", "berry", "wine", "ruby", "jade",
                                      "apple", "lime", "pine", "ginger", "floral", "fruity", "woody", "musky"})

# Lexicon words that are also common verb forms: not a value after a subject or auxiliary ("I felt", "it rose",
# "to iron") or before a verb complement ("felt like", "felt that").
VERB_HOMOGRAPHS: frozenset[str] = frozenset({"felt", "rose", "tan", "iron", "clear", "cool", "warm", "light",
                                             "polished", "brushed", "coated", "lacquered", "hammered", "frosted",
                                             "cork", "tin", "steel", "glass", "paper", "rust"})
SUBJECTS_AND_AUXILIARIES: frozenset[str] = frozenset("""
i you we they he she it who that which this i've i'd i'll we've you've they've it's have has had having do does did
will would can could should might must may to just really never always also immediately instantly actually finally
barely still even already only then once soon quickly easily
""".split())
VERB_COMPLEMENTS: frozenset[str] = frozenset("like that as so very really it my the a an his her their your our this "
                                             "up down off out in into".split())
# Nouns a temperature or size adjective may describe instead of the product ("cold weather", "small hint").
OTHER_NOUNS: frozenset[str] = frozenset("""
weather water day days night nights morning mornings winter summer season climate climates room rooms shower showers
bath air temperature temperatures temps month months hint bit amount amounts number part portion fraction difference
price cost fee issue issues problem problems detail details chance percentage quantity dose dab drop touch step
change changes improvement home house apartment studio setup business company town space spaces area family group
crowd kids children print font selection variety range order batch time times while deal list budget
""".split())

NEGATORS: frozenset[str] = frozenset("no not never without nothing none zero neither nor hardly barely lacks lack "
                                     "lacking cannot".split())
NEGATION_SCOPE = 4  # words after a negator that it covers, up to the end of the clause
CLAUSE_BREAKS: frozenset[str] = frozenset("but although though however yet whereas while".split())

# "X-free", "non-X", "free of X": the standard free-of terms, by the facet of what they are free of.
FREE_OF: dict[str, str] = {
    **{b: "scent" for b in ("fragrance", "scent", "perfume", "odor", "odour", "smell")},
    **{b: "texture" for b in ("grease", "greasy", "oil", "oily", "sticky", "residue", "stick")},
    **{b: "material" for b in ("alcohol", "paraben", "parabens", "sulfate", "sulfates", "sulphate", "latex",
                               "lead", "bpa", "gluten", "silicone", "silicones", "phthalate", "phthalates",
                               "talc", "mercury", "cadmium", "nickel")},
}

# Judgement adjectives: a cue word next to one ("smells great", "love the color", "awful taste") selects its facet
# with the value ``pleasant`` / ``unpleasant`` when the sentence names no value for it.
PLEASANT: frozenset[str] = frozenset("""
great good nice lovely amazing wonderful fantastic beautiful gorgeous pleasant pleasing divine heavenly delicious
awesome excellent perfect fine decent cool incredible yummy love loved loves superb terrific fabulous best pretty
fabulous outstanding delightful refreshing wonderful clean fresh
""".split())
UNPLEASANT: frozenset[str] = frozenset("""
bad awful terrible horrible weird strange nasty gross odd funky off overpowering harsh unpleasant disgusting worst
hate hated hates dislike disliked chemical rancid sour stale cheap fake artificial medicinal sickening
""".split())
INTENSIFIERS: frozenset[str] = frozenset("very really so quite pretty fairly just absolutely too super extremely "
                                         "truly rather kind sort of a the is was are were has had it its this".split())
# Words that may follow a value's trailing cue ("the vanilla scent is ...", "... the pink color, and"): a cue word
# followed by another noun heads a compound instead ("color care", "sound quality", "size chart").
AFTER_CUE: frozenset[str] = frozenset("""
is was are were isn't wasn't be been being and or but in on of for with that which it i is lasts lasted lasting
stays stayed comes came goes went fades faded seems seemed makes made has had have will would does did doesn't didn't
gets got looks looked smells works worked really too so very though also as at to from when while if this my you
""".split())

# Modifiers kept with a colour or scent value ("warm pink", "slight sandalwood").
COLOR_MODIFIERS: frozenset[str] = frozenset("light dark deep pale pastel bright warm cool soft hot dusty muted rich "
                                            "neon baby royal sky electric vivid jet off icy true".split())
SCENT_MODIFIERS: frozenset[str] = frozenset("slight subtle faint light strong heavy sweet fresh warm spicy powdery "
                                            "woody musky clean soft".split())

# Regexes whose ``value`` group is a facet value; ``facet`` is fixed per pattern or taken from a cue word. Each is
# generic English around a facet word, not a product- or catalogue-specific phrasing.
_V = r"(?P<value>[a-z][a-z0-9\-']*(?: [a-z][a-z0-9\-']*){0,2})"
CUE_PATTERNS: tuple[tuple[str | None, str], ...] = (
    # "scent: vanilla", "Color - navy", "material = wool" (a bare hyphen joins words: "weight-bearing")
    (None, r"\b(?P<cue>{cues})(?:\s*[:=]\s*|\s+-\s+)" + _V),
    # "the scent is vanilla", "colour was a deep red" (the copula and determiners are skipped)
    (None, r"\b(?P<cue>{cues}) (?:is|was|are|were) (?:a |an |the )?(?:very |really |quite |pretty |more |so )?" + _V),
    # "smells like vanilla", "smells of pine", "the smell of grape candy", "hint of lavender"
    ("scent", r"\b(?:smell(?:s|ed|ing)?|scent|aroma|fragrance|hint|notes?|whiff) (?:like|of) (?:a |an |the |some )?"
              + _V),
    ("taste", r"\b(?:tast(?:es|ed|ing)|flavou?r) (?:like |of )(?:a |an |the )?" + _V),
    ("taste", r"\btast(?:es|ed|ing) (?:very |really |quite |so |a bit |slightly )?" + _V),
    ("material", r"\bmade (?:of|from|out of) (?:a |an |the |high[- ]quality |durable |premium |solid |real |pure )?"
                 + _V),
    ("texture", r"\bfeels? (?:very |really |quite |so |a bit |slightly )?" + _V),
    ("size", r"\bsizes? (?:is |was )?(?:a |an )?" + _V),
)

# A quantity with its unit: "18'", "1/2\"", "0.37 fluid ounce", "4\"x6\"", "10mmx6mmx4.5mm". Pack counts, electrical
# ratings and temperatures are not sizes.
_NUM = r"(?:\d+-\d+/\d+|\d+/\d+|\d*\.\d+|\d+)"
_UNIT = (r"(?:fl\.? ?oz\.?|fluid ounces?|ounces?|oz|inch(?:es)?|in\b|\"|''|'(?!s\b|\w)|feet|foot|ft|mm|cm|"
         r"millimet(?:er|re)s?|centimet(?:er|re)s?|met(?:er|re)s?|m\b|ml|milliliters?|liters?|litres?|l\b|gm|grams?|"
         r"g\b|kg|kilograms?|lbs?|pounds?|gal(?:lon)?s?|quarts?|qt|yards?|yd|mils?|gauge|awg)")
QUANTITY_RE = (r"(?<![\w./])(?<!\d-)(?P<value>" + _NUM + r"\s*-?\s*" + _UNIT + r"?(?:\s*[x×*]\s*" + _NUM + r"\s*-?\s*"
               + _UNIT + r"?)*)(?![\w/])")
QUANTITY_UNIT_RE = _UNIT
# A weight followed by these words is a rating, not the product's weight ("300 lb working load").
RATING_WORDS: frozenset[str] = frozenset("working load capacity strength limit max maximum test break rated rating "
                                         "tension pressure force".split())

# Words that end a value phrase going backwards from a trailing cue ("Love the [vanilla] scent").
STOPWORDS: frozenset[str] = frozenset("""
a an the this that these those its it it's my your our their his her and or but with without for of to in on at by
from is are was were be be been very really quite so too nice great good lovely beautiful amazing perfect pleasant
love loved like likes liked the best better strong light subtle mild slight overall real true natural fresh new
favorite favourite wonderful awesome excellent fantastic decent okay ok fine bad poor terrible horrible weird odd
strange different same little bit lot much more most less least no not any some all every each has have had
spot on right cool pretty gorgeous divine heavenly pleasing yummy delicious awful nasty gross harsh cheap
overpowering quality high low sound mine yours ours theirs me you him them us i we they he she
""".split())
# Facets whose values are things, not qualities: a cue for them accepts only their own lexicon words (or, for
# material, open vocabulary), never another facet's ("thick material", "cooling capacity").
CONCRETE_FACETS: frozenset[str] = frozenset({"material", "size"})
# Facets whose free-form (non-lexicon) values we accept from cues; sizes need numbers or lexicon words.
OPEN_VOCAB_FACETS: frozenset[str] = frozenset({"color", "scent", "taste", "texture", "sound", "material", "finish",
                                               "feel"})

SYNONYMS: dict[str, str] = {
    "grey": "gray", "colour": "color", "aluminium": "aluminum", "savoury": "savory", "odourless": "odorless",
    "fragrance free": "fragrance-free", "heavy-duty": "heavy duty",
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
