"""The shipped JSON Schema is the issue model's, and the examples satisfy it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from newsletter.issue import json_schema

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "schema" / "issue.schema.json"
EXAMPLES = sorted(p for p in (ROOT / "examples" / "issues").glob("*.json") if p.name.count(".") == 1)
TRANSLATIONS = sorted(p for p in (ROOT / "examples" / "issues").glob("*.json") if p.name.count(".") == 2)


def make_schema():
    spec = importlib.util.spec_from_file_location("make_schema", ROOT / "scripts" / "make_schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_schema_matches_the_model():
    assert SHIPPED.is_file(), "schema/issue.schema.json is missing: run `make schema`"
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert shipped == json_schema(), "schema/issue.schema.json is stale: run `make schema`"


def test_shipped_schema_is_formatted_as_generated():
    assert SHIPPED.read_text(encoding="utf-8") == make_schema().render(), "run `make schema`"


def test_check_flags_a_stale_file_and_writing_fixes_it(tmp_path, monkeypatch):
    script = make_schema()
    target = tmp_path / "schema" / "issue.schema.json"
    monkeypatch.setattr(script, "SCHEMA", target)

    assert script.main(["--check"]) == 1  # missing
    assert script.main([]) == 0
    text = target.read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.startswith('{\n  "$defs"')
    assert json.loads(text) == json_schema()
    assert script.main(["--check"]) == 0

    stale = json.loads(text)
    stale["required"].remove("subject")
    target.write_text(json.dumps(stale, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert script.main(["--check"]) == 1
    target.write_text(text.rstrip("\n"), encoding="utf-8")  # formatting counts too
    assert script.main(["--check"]) == 1


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_shipped_schema(path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SHIPPED.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(json.loads(path.read_bytes()))]
    assert errors == []


@pytest.mark.parametrize("path", TRANSLATIONS, ids=lambda p: p.name)
def test_translation_files_validate_as_translations_and_merge_into_a_valid_document(path):
    jsonschema = pytest.importorskip("jsonschema")
    from newsletter_cli.publishing import read_issue

    schema = json.loads(SHIPPED.read_text(encoding="utf-8"))
    translation = {"$defs": schema["$defs"], "$ref": "#/$defs/Translation"}
    doc = {"language": path.name.split(".")[1], **json.loads(path.read_bytes())}  # the file name says it
    assert [e.message for e in jsonschema.Draft202012Validator(translation).iter_errors(doc)] == []
    whole = ROOT / "examples" / "issues" / (path.name.split(".")[0] + ".json")
    merged = json.loads(read_issue(whole)[1])
    assert [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(merged)] == []
    assert doc["language"] in [t["language"] for t in merged["translations"]]


def test_shipped_schema_rejects_a_bad_document():
    # Proves the validation above can fail: the schema is not vacuous.
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SHIPPED.read_text(encoding="utf-8"))
    doc = json.loads(EXAMPLES[0].read_bytes())
    del doc["subject"]
    doc["surprise"] = True
    messages = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
    assert any("'subject' is a required property" in m for m in messages)
    assert any("surprise" in m for m in messages)
