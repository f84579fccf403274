"""Where the CLI's commands act: a deployed stack (found by its CloudFormation outputs) or the
local stack (`--local`: moto in a server on 127.0.0.1, with the CLI running the functions).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# The template's logical ids, and the stack outputs that name them.
OUTPUTS = {
    "NewsletterBucket": "BucketName",
    "ListsTable": "ListsTableName",
    "IssuesTable": "IssuesTableName",
    "SubscribersTable": "SubscribersTableName",
    "SuppressionsTable": "SuppressionsTableName",
    "SendsTable": "SendsTableName",
    "FeedbackTable": "FeedbackTableName",
    "SendQueue": "SendQueueUrl",
    "PublishFunction": "PublishFunctionName",
    "FanoutQueue": "FanoutQueueUrl",
    "FeedbackQueue": "FeedbackQueueUrl",
    "PublishDLQ": "PublishDLQUrl",
    "FanoutDLQ": "FanoutDLQUrl",
    "SendDLQ": "SendDLQUrl",
    "FeedbackDLQ": "FeedbackDLQUrl",
}


# `subscribers import` writes this many subscribers at once (subscribers.WORKERS); urllib3 keeps 10
# connections unless told, and would open and drop one for each write beyond them. The local
# stack's client keeps devstack's 10: the import then writes 10 at a time (the moto server is the limit).
DYNAMODB_CONNECTIONS = 128
# The CLI's DynamoDB client. Every request it sends is built by this code, and DynamoDB checks each
# one again (a ValidationException names what is wrong), so botocore's own check of the parameters
# is left out: it was a third of an import's CPU (bench/import_rate.py).
DYNAMODB_CONFIG = {"max_pool_connections": DYNAMODB_CONNECTIONS, "parameter_validation": False}


class CliError(Exception):
    """A problem the user can fix; printed as is, without a traceback."""


def samconfig_defaults(directory: Path | None = None) -> dict[str, str]:
    """stack_name and region from samconfig.toml (what `sam deploy` used), if there is one."""
    path = (directory or Path.cwd()) / "samconfig.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    params = data.get("default", {}).get("global", {}).get("parameters", {})
    deploy = data.get("default", {}).get("deploy", {}).get("parameters", {})
    return {k: str(v) for k, v in {**params, **deploy}.items() if k in ("stack_name", "region")}


@dataclass
class Target:
    kind: str  # "stack" | "local"
    name: str
    names: dict[str, str]  # logical id → physical name or URL
    _clients: dict = field(default_factory=dict)
    session: object | None = None
    local: object | None = None  # devstack.stack.LocalStack when kind == "local"
    publish_env: dict[str, str] | None = None
    outputs: dict[str, str] = field(default_factory=dict)  # all of a deployed stack's outputs
    profile: str | None = None  # the --profile asked for (a writer process's session takes it again)

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def ref(self, logical: str) -> str:
        return self.names[logical]

    def client(self, service: str):
        if service not in self._clients:
            if self.local is not None:
                self._clients[service] = self.local.client(service)
            elif service == "dynamodb":
                from botocore.config import Config

                config = Config(**DYNAMODB_CONFIG)
                self._clients[service] = self.session.client(service, config=config)
            else:
                self._clients[service] = self.session.client(service)
        return self._clients[service]

    def client_spec(self):
        """How another process makes this target's DynamoDB client (subscribers.ClientSpec), or None
        for the local stack (moto takes one transaction at a time, so its imports stay in one process)
        and for a target built around given clients (tests)."""
        if self.local is not None or self.session is None:
            return None
        from .subscribers import ClientSpec

        return ClientSpec(region=self.session.region_name, profile=self.profile, config=dict(DYNAMODB_CONFIG))

    def token_secret_name(self) -> str:
        if self.local is not None:
            return "/" + self.local.param("TokenSecretParameter").lstrip("/")
        name = self.outputs.get("TokenSecretParameterName")
        if not name:
            raise CliError(f"stack {self.name!r} has no output TokenSecretParameterName: is it up to date?")
        return name

    def grace_days(self) -> float:
        """TokenGraceDays as deployed (the unsubscribe function's TOKEN_GRACE_DAYS)."""
        if self.local is not None:
            return float(self.local.functions["UnsubscribeFunction"].environment.get("TOKEN_GRACE_DAYS", 365))
        return float(self.outputs.get("TokenGraceDays") or 365)

    def token_key(self, version: int | None = None):
        """One version of the token secret (the newest without one), as the functions read it."""
        from newsletter.keys import Key

        name, client = self.token_secret_name(), self.client("ssm")
        try:
            p = client.get_parameter(Name=f"{name}:{version}" if version else name, WithDecryption=True)["Parameter"]
        except client.exceptions.ParameterNotFound:
            raise CliError(f"the token secret {name} does not exist yet (README, deploy step 4)") from None
        except client.exceptions.ParameterVersionNotFound:
            return None
        return Key(int(p.get("Version") or 1), p["Value"].encode("utf-8"), p["LastModifiedDate"].timestamp())

    def token_secret(self) -> bytes:
        """The unsubscribe tokens' secret (SSM SecureString, its newest version)."""
        return self.token_key().secret

    def token_keys(self):
        from newsletter.keys import KeyRing

        return KeyRing(self.token_key, self.grace_days())

    def publish_environment(self) -> dict[str, str]:
        """The publish function's environment: its sender, web address and limits, as deployed."""
        if self.publish_env is None:
            if self.local is not None:
                self.publish_env = dict(self.local.functions["PublishFunction"].environment)
            else:
                conf = self.client("lambda").get_function_configuration(FunctionName=self.ref("PublishFunction"))
                self.publish_env = dict(conf.get("Environment", {}).get("Variables", {}))
        return self.publish_env


def stack_target(name: str, *, region: str | None = None, profile: str | None = None) -> Target:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, ProfileNotFound

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
        outputs = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])
    except ProfileNotFound as exc:
        raise CliError(f"AWS profile not found: {exc}") from None
    except NoRegionError:
        raise CliError("no AWS region: pass --region, or set it in samconfig.toml or your AWS config") from None
    except NoCredentialsError:
        raise CliError(
            "no AWS credentials: configure a profile (aws configure) and pass --profile, or use --local"
        ) from None
    except ClientError as exc:
        msg = exc.response.get("Error", {}).get("Message", str(exc))
        if "does not exist" in msg:
            where = session.region_name or "the default region"
            raise CliError(
                f"stack {name!r} not found in {where}. Deploy it (sam deploy --guided), or pass --stack NAME "
                "and --region, or use --local for the local stack"
            ) from None
        raise CliError(f"cannot read stack {name!r}: {msg}") from None
    except BotoCoreError as exc:
        raise CliError(f"cannot reach AWS to read stack {name!r}: {exc}") from None
    by_output = {o["OutputKey"]: o["OutputValue"] for o in outputs}
    missing = [out for out in OUTPUTS.values() if out not in by_output]
    if missing:
        raise CliError(
            f"stack {name!r} has no output(s) {', '.join(missing)}: is it this project's stack, and up to date?"
        )
    return Target(
        "stack",
        name,
        {logical: by_output[out] for logical, out in OUTPUTS.items()},
        session=session,
        outputs=by_output,
        profile=profile,
    )


def local_target(directory: Path | None = None) -> Target:
    """The local stack, started in the background if it is not running."""
    try:
        from devstack import server
        from devstack.stack import LocalStack
    except ImportError as exc:
        raise CliError(
            f"--local needs the development extras ({exc.name} is missing): pip install -e '.[dev]' (make demo does)"
        ) from None
    try:
        state = server.start(directory)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    stack = LocalStack.attach(state)
    names = {logical: stack.ref(logical) for logical in OUTPUTS}
    return Target("local", state["endpoint_url"], names, local=stack)
