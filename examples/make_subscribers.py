#!/usr/bin/env python3
"""Write examples/subscribers.csv: 1000 deterministic, fictitious subscribers.

Standard library only; seeded, so every run writes the same bytes.
Addresses use the reserved domains example.com/.org/.net, plus the five
Amazon SES mailbox simulator addresses (all active) for end-to-end tests.
Readers' languages are mostly English, a good share French and Portuguese
(European and Brazilian: pt, pt-BR), and some the example issue is not
translated into (German, Spanish, Georgian), who get its default, English.

    python examples/make_subscribers.py [output.csv]
"""

from __future__ import annotations

import csv
import random
import sys
import unicodedata
from pathlib import Path

ROWS = 1000
SEED = 201507
# The languages are drawn from a generator of their own, so that the names, addresses and
# statuses (drawn from SEED) stay what they were before readers had languages other than a pool's.
LANGUAGE_SEED = 20150713

SIMULATOR = [
    "success@simulator.amazonses.com",
    "bounce@simulator.amazonses.com",
    "complaint@simulator.amazonses.com",
    "ooto@simulator.amazonses.com",
    "suppressionlist@simulator.amazonses.com",
]
DOMAINS = ["example.com", "example.org", "example.net"]

# (the names' language, weight, first names, last names): the pool a reader is drawn from
POOLS = [
    (
        "en",
        66,
        [
            "James",
            "Mary",
            "Sarah",
            "David",
            "Emma",
            "Michael",
            "Olivia",
            "Daniel",
            "Aisha",
            "Liam",
            "Grace",
            "Thomas",
            "Priya",
            "John",
            "Fatima",
            "Chloe",
            "Samuel",
            "Amara",
            "Oliver",
            "Hannah",
            "Chinedu",
            "Mei",
            "Ahmed",
            "Siobhán",
            "Zoë",
            "José",
            "Wei",
            "Ngozi",
            "Kwame",
            "Ana",
        ],
        [
            "Smith",
            "Johnson",
            "O'Brien",
            "Williams",
            "Brown",
            "Okafor",
            "Patel",
            "Taylor",
            "Nguyen",
            "Davies",
            "Mensah",
            "Khan",
            "Murphy",
            "Álvarez",
            "Evans",
            "Hughes",
            "Adeyemi",
            "Clarke",
            "Walker",
            "Hassan",
            "Diallo",
            "Chen",
            "Kowalski",
            "Mitchell",
            "Ó Súilleabháin",
        ],
    ),
    (
        "fr",
        12,
        [
            "Camille",
            "Léa",
            "Hélène",
            "François",
            "Amadou",
            "Aïssatou",
            "Élodie",
            "Jérôme",
            "Moussa",
            "Chloé",
            "Benoît",
            "Mariama",
            "Noël",
            "Océane",
            "Ousmane",
        ],
        [
            "Dubois",
            "Lefèvre",
            "Diop",
            "Ndiaye",
            "Moreau",
            "Traoré",
            "Girard",
            "Faure",
            "Coulibaly",
            "Rousseau",
            "Ouédraogo",
            "Lemaître",
            "Sow",
            "Bâ",
        ],
    ),
    (
        "de",
        9,
        [
            "Jürgen",
            "Zoë",
            "Lukas",
            "Anna",
            "Matthias",
            "Sophie",
            "Jörg",
            "Katharina",
            "Felix",
            "Lena",
            "Łukasz",
            "Dragan",
            "Agnieszka",
            "Stefan",
        ],
        [
            "Müller",
            "Schröder",
            "Weiß",
            "Huber",
            "Bauer",
            "Gruber",
            "Wiśniewski",
            "Hofmann",
            "Köhler",
            "Jovanović",
            "Wagner",
            "Nowak",
            "Steiner",
            "Meißner",
        ],
    ),
    (
        "pt",
        7,
        [
            "João",
            "Maria",
            "António",
            "Inês",
            "Gonçalo",
            "Conceição",
            "Tomás",
            "Beatriz",
            "Amílcar",
            "Fátima",
            "Sebastião",
            "Luísa",
        ],
        [
            "Silva",
            "Gonçalves",
            "Sá",
            "Fernandes",
            "Cabral",
            "Pereira",
            "Araújo",
            "Lopes",
            "Tavares",
            "Monteiro",
            "Brandão",
            "Cardoso",
        ],
    ),
    (
        "ka",
        6,
        ["Nino", "Giorgi", "Tamar", "Levan", "Ketevan", "Davit", "Mariam", "Irakli", "Salome", "Nika"],
        [
            "Beridze",
            "Kapanadze",
            "Gelashvili",
            "Lomidze",
            "Tsiklauri",
            "Maisuradze",
            "Chkheidze",
            "Javakhishvili",
            "Abashidze",
            "Kvaratskhelia",
        ],
    ),
]
# The language a reader of each pool asked for, (language, weight): an international list, so an
# English-named reader may read French, Portuguese or Spanish; the Portuguese pool is European and
# Brazilian; a German or Georgian reader sometimes reads English.
LANGUAGES = {
    "en": [("en", 78), ("fr", 8), ("pt", 3), ("pt-BR", 4), ("es", 7)],
    "fr": [("fr", 92), ("en", 8)],
    "de": [("de", 80), ("en", 20)],
    "pt": [("pt", 55), ("pt-BR", 45)],
    "ka": [("ka", 50), ("en", 50)],
}
# People who always appear (names the tests and demos refer to), several written in their own
# script; the address comes from the romanisation.
FIXED = [
    ("José Álvarez", "jose.alvarez", "es"),
    ("Zoë Müller", "zoe.mueller", "de"),
    ("Łukasz Wiśniewski", "lukasz.wisniewski", "de"),
    ("Nino Beridze", "nino.beridze", "ka"),
    ("王芳", "wang.fang", "en"),
    ("李伟", "li.wei", "en"),
    ("张敏", "zhang.min", "en"),
    ("ნინო ბერიძე", "nino.beridze.tbilisi", "ka"),
    ("გიორგი კაპანაძე", "giorgi.kapanadze", "ka"),
    ("თამარ ლომიძე", "tamar.lomidze", "ka"),
    ("Анна Петрова", "anna.petrova", "en"),
    ("Олександр Коваленко", "oleksandr.kovalenko", "en"),
    ("محمد الحسن", "mohammed.alhassan", "fr"),
    ("Ελένη Παπαδοπούλου", "eleni.papadopoulou", "en"),
    ("Nguyễn Thị Hương", "nguyen.thi.huong", "fr"),
    ("Şule Yılmaz", "sule.yilmaz", "de"),
]
ORGANISATIONS = [
    "Ministry of Internal Affairs of Georgia",
    "Federal Ministry of the Interior, Austria",
    "European Commission, DG HOME",
    "ECOWAS Commission",
    "Red Cross",
    "University of Oxford, Centre on Migration, Policy and Society",
    "Université Cheikh Anta Diop",
    "Bundesamt für Migration und Flüchtlinge",
    "Serviço de Estrangeiros e Fronteiras",
    "Public Service Development Agency",
    "Frontex",
    "IOM",
    "UNHCR",
    "Caritas",
    "Independent consultant",
    '"Migration Matters" Foundation',
    "Österreichisches Rotes Kreuz",
    "Ilia State University",
]

_FOLD = str.maketrans(
    {"ł": "l", "Ł": "L", "ø": "o", "ß": "ss", "đ": "d", "ı": "i", "æ": "ae", "œ": "oe", "'": "", " ": "."}
)


def local_part(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name.translate(_FOLD))
    ascii_ = "".join(c for c in folded if ord(c) < 128 and (c.isalnum() or c == "."))
    return ascii_.lower().strip(".")


def pick(weighted: list[tuple[str, int]], u: float) -> str:
    """The language at `u` (0 <= u < 1) of the weights' cumulative share."""
    total, at = sum(w for _, w in weighted), 0
    for language, weight in weighted:
        at += weight
        if u * total < at:
            return language
    return weighted[-1][0]


def generate() -> list[dict[str, str]]:
    rng = random.Random(SEED)
    languages = random.Random(LANGUAGE_SEED)
    n = ROWS - len(SIMULATOR)
    # Exact shares: 3 % unsubscribed, 1 % bounced, 0.5 % complained (of all 1000 rows).
    statuses = ["unsubscribed"] * 30 + ["bounced"] * 10 + ["complained"] * 5
    statuses += ["active"] * (n - len(statuses))
    rng.shuffle(statuses)

    seen: set[str] = set(SIMULATOR)
    rows = []
    fixed = list(FIXED)
    for i in range(n):
        fixed_name = bool(fixed) and (rng.random() < 0.03 or n - i <= len(fixed))
        asked = languages.random()  # one draw a row, whoever the row is
        if fixed_name:
            name, local, language = fixed.pop(0)
        else:
            pool, _, firsts, lasts = rng.choices(POOLS, weights=[p[1] for p in POOLS])[0]
            language = pick(LANGUAGES[pool], asked)
            name = f"{rng.choice(firsts)} {rng.choice(lasts)}"
            local = local_part(name)
            style = rng.random()
            if style < 0.15:  # jsmith@
                first, _, last = local.partition(".")
                local = f"{first[0]}{last.replace('.', '')}" if last else first
            elif style < 0.25:  # john_smith@
                local = local.replace(".", "_")
            if rng.random() < 0.02:
                name = ""  # some sign-up forms did not ask for a name
        domain = rng.choice(DOMAINS)
        email, k = f"{local}@{domain}", 1
        while email in seen:
            k += 1
            email = f"{local}{k}@{domain}"
        seen.add(email)
        organisation = rng.choice(ORGANISATIONS) if rng.random() < 0.45 else ""
        rows.append(
            {"email": email, "name": name, "language": language, "status": statuses[i], "organisation": organisation}
        )

    for address in SIMULATOR:
        rows.insert(
            rng.randrange(len(rows) + 1),
            {
                "email": address,
                "name": "",
                "language": "en",
                "status": "active",
                "organisation": "Amazon SES mailbox simulator",
            },
        )
    assert len(rows) == ROWS
    return rows


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("subscribers.csv")
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, ["email", "name", "language", "status", "organisation"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(generate())
    print(f"wrote {ROWS} rows to {out}")


if __name__ == "__main__":
    main()
