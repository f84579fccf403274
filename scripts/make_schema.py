#!/usr/bin/env python3
"""Write schema/issue.schema.json from the issue model (`newsletter.issue.json_schema()`).

Usage: scripts/make_schema.py [--check]
  --check   write nothing; exit 1 if the shipped schema differs from the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from newsletter.issue import json_schema

SCHEMA = Path(__file__).resolve().parents[1] / "schema" / "issue.schema.json"


def render() -> str:
    """The schema file's exact text: pretty-printed, sorted keys, trailing newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the schema file is stale")
    args = parser.parse_args(argv)

    text = render()
    current = SCHEMA.read_text(encoding="utf-8") if SCHEMA.exists() else None
    if args.check:
        if current != text:
            print(f"{SCHEMA.name} is stale: run `make schema`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        SCHEMA.parent.mkdir(parents=True, exist_ok=True)
        SCHEMA.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
