"""The package lists every folder it ships files from: setuptools warns about each one it does not
(a wall of warnings on the README's first command), and a language added without its catalog
folder listed would still ship, but only through that deprecated path."""

import tomllib

from conftest import ROOT


def test_every_folder_of_package_data_is_a_listed_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    package = ROOT / "functions" / "newsletter"
    catalogs = {f"newsletter.locale.{p.parent.name}.LC_MESSAGES" for p in package.glob("locale/*/LC_MESSAGES")}
    assert catalogs and catalogs <= listed, sorted(catalogs - listed)
    for folder in ("templates", "static", "locale"):
        assert (package / folder).is_dir() and f"newsletter.{folder}" in listed
    assert (ROOT / "devstack" / "events").is_dir() and "devstack.events" in listed
