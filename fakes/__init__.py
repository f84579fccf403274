"""Test doubles for AWS, in one place, for the tests and the benchmarks (not shipped: this package
is not in pyproject's [tool.setuptools] packages; tests and bench import it from the repository
root). Where moto is fast enough, the tests use moto (the local stack in devstack/ does); these
fakes are for what moto is too slow for: a million subscribers, thousands of sends a second
from several threads, a cold start that must not load moto.

One module per service, each saying in its docstring what it models and what it does not:

- `fakes.dynamodb`: FakeDynamoDB, the low-level client calls of the stores, with conditional
  semantics, expression parsing and a capacity estimate;
- `fakes.sqs`: FakeSQS and WorkQueue (a queue shared by simulated function instances);
- `fakes.s3`: FakeS3;
- `fakes.ssm`: FakeSSM;
- `fakes.ses`: SimulatedSES, SES v2 with an account's sending rate, latency and throttling;
- `fakes.clients`: Clients, a stand-in for `newsletter.aws.client` handing out the fakes;
- `fakes.events`: Lambda events (SQS, S3, SNS in SQS) built from the samples in events/.

Import rule: every module imports only the standard library at module level (botocore, for the
errors they raise, is imported when an error is raised). The cold-start benchmark's child process
(bench/_child.py) builds the fakes before its timer starts, so a fake that imported boto3,
botocore or newsletter at module level would hide part of the cold start it measures. This
file imports nothing, so `import fakes.dynamodb` loads that module alone.
"""
