"""Language tags, and which of an issue's languages a reader gets.

Tags are BCP 47 as mail and HTML use them (`Content-Language`, `lang`): an ISO 639-1 language,
then optionally a script (`sr-Latn`) and a region (`pt-BR`). `check_tag` refuses what is not a
language and spells the rest one way (`PT-br` → `pt-BR`); `choose` walks a reader's tag back to
what the issue has: `pt-BR` → `pt` → the issue's default.
"""

from __future__ import annotations

# ISO 639-1: every two-letter language code.
ISO_639_1 = frozenset(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz
    ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik
    io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml
    mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd
    se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi
    vo wa wo xh yi yo za zh zu
    """.split()
)
# Written right to left: their pages and messages carry dir="rtl".
RIGHT_TO_LEFT = frozenset({"ar", "dv", "fa", "he", "ks", "ku", "ps", "sd", "ug", "ur", "yi"})


def check_tag(tag: str) -> str:
    """The tag in its usual spelling, or ValueError saying what is wrong."""
    parts = tag.split("-")
    language = parts[0].lower()
    if language not in ISO_639_1:
        raise ValueError(f"{parts[0]!r} is not an ISO 639-1 language code (en, fr, pt, ...)")
    out = [language]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())  # a script: Latn, Cyrl
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())  # a region: BR, 419
        else:
            raise ValueError(f"{part!r} is neither a script (4 letters) nor a region (2 letters or 3 digits)")
    return "-".join(out)


def choose(reader: str | None, available: list[str], default: str) -> str:
    """The issue's language for a reader: theirs, else a broader form of it, else the default.
    A broader form of the reader's tag is also found among narrower ones the issue has
    (a reader in `pt` gets `pt-BR` when that is the only Portuguese)."""
    if not reader:
        return default
    try:
        reader = check_tag(reader)
    except ValueError:
        return default
    by_lower = {a.lower(): a for a in available}
    parts = reader.lower().split("-")
    while parts:
        found = by_lower.get("-".join(parts))
        if found:
            return found
        parts.pop()
    primary = reader.lower().split("-")[0]
    for a in available:
        if a.lower().split("-")[0] == primary:
            return a
    return default


def direction(tag: str) -> str:
    return "rtl" if tag.split("-")[0].lower() in RIGHT_TO_LEFT else "ltr"
