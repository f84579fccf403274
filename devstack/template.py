"""Reading `template.yaml`: its resources, and each function's environment as deployed.

Intrinsic functions are resolved just far enough for a local stack: Ref, Fn::Sub, Fn::GetAtt,
Fn::If/Equals/Not/And/Or, Fn::Join, Fn::Select; pseudo parameters get local values.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]  # the repository, when run from it
# The stack's template, shipped inside the package (a link to the repository's in the source tree).
TEMPLATE = Path(__file__).resolve().parent / "template.yaml"
SOURCE_TREE = (ROOT / "pyproject.toml").is_file() and (ROOT / "functions" / "newsletter").is_dir()

ACCOUNT = "123456789012"
REGION = "us-east-1"


class _Loader(yaml.SafeLoader):
    pass


def _tag(tag: str, name: str):
    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    _Loader.add_constructor(tag, construct)


for _t in (
    "Sub",
    "GetAtt",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Join",
    "Select",
    "Split",
    "FindInMap",
    "Base64",
    "GetAZs",
    "ImportValue",
    "Cidr",
):
    _tag(f"!{_t}", f"Fn::{_t}")
_tag("!Ref", "Ref")
_tag("!Condition", "Condition")


def load(path: Path = TEMPLATE) -> dict:
    """The template as data (a fresh copy: callers may change it)."""
    stat = path.stat()
    return copy.deepcopy(_parsed(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _parsed(path: str, mtime_ns: int, size: int) -> dict:
    # Parsing takes a third of a second; the tests build a local stack hundreds of times.
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)


class Resolver:
    """Resolves intrinsics against parameter values and the local names of resources."""

    def __init__(self, template: dict, parameters: dict[str, str], physical: dict[str, dict[str, str]]):
        self.template = template
        self.params = {
            name: str(parameters.get(name, spec.get("Default", "")))
            for name, spec in (template.get("Parameters") or {}).items()
        }
        self.params.update(
            {
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT,
                "AWS::StackName": parameters.get("AWS::StackName", "newsletter"),
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::NoValue": None,
            }
        )
        # physical[logical] = {"Ref": ..., "Arn": ..., "QueueUrl": ..., ...}
        self.physical = physical

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def resolve(self, value):
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                if arg in self.params:
                    return self.params[arg]
                return self.physical[arg]["Ref"]
            if fn == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.physical[logical][attr]
            if fn == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(self._sub(m.group(1), local)), text)
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if fn == "Fn::Equals":
                a, b = self.resolve(arg)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Fn::And":
                return all(self.resolve(arg))
            if fn == "Fn::Or":
                return any(self.resolve(arg))
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self.resolve(items) if i is not None)
            if fn == "Fn::Select":
                index, items = self.resolve(arg)
                return items[int(index)]
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, name: str, local: dict):
        if name in local:
            return local[name]
        if name in self.params:
            return self.params[name]
        if "." in name:
            logical, attr = name.split(".", 1)
            return self.physical[logical][attr]
        return self.physical[name]["Ref"]


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def function_specs(template: dict) -> dict[str, dict]:
    """Each function's properties with the template's Globals merged in."""
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    out = {}
    for name, res in resources(template, "AWS::Serverless::Function").items():
        props = {**globals_, **res["Properties"]}
        env = {
            **((globals_.get("Environment") or {}).get("Variables") or {}),
            **((res["Properties"].get("Environment") or {}).get("Variables") or {}),
        }
        props["Environment"] = {"Variables": env}
        out[name] = props
    return out
