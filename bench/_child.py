"""One cold start in a fresh interpreter (run by bench/coldstart.py and bench/memory.py).

    python bench/_child.py CONFIG.json

Before the timer: read the config, build the in-memory AWS fakes (standard library only) and
arrange for `newsletter.aws.client` to hand them out as soon as that module is imported. The
timer then spans what Lambda does for a new container's first event: import the handler module
(its imports and module-level init) and call the handler with the sample event. Mode "baseline"
times `import boto3` alone after the same preparation.

Results (JSON) go to the config's "out" path; stdout carries the function's own logs.
"""

import json
import resource
import sys
import time


def _marker(text: str) -> None:
    # Under -X importtime, lets the parent tell the handler's imports from the preparation's.
    print(f"import time: BENCH-MARK {text}", file=sys.stderr, flush=True)


class _Context:
    def __init__(self, name: str, timeout_s: int, memory_mb: int):
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.aws_request_id = "00000000-0000-4000-8000-000000000000"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "bench"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _AwsPatch:
    """A meta-path finder: when `newsletter.aws` is first imported, its `client` is replaced.

    The module itself still loads (its imports are part of the cold start); only the clients it
    would create are swapped for the fakes. With real_clients the real client is created too
    (its CPU and memory count) and kept, but the fake answers.
    """

    def __init__(self, fakes: dict, real_clients: bool):
        self.fakes, self.real_clients = fakes, real_clients
        self.asked: list[str] = []
        self.kept: list = []
        self.original = None

    def find_spec(self, name, path=None, target=None):
        if name != "newsletter.aws":
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        patch = self

        def exec_module(module):
            run(module)
            patch.original = module.client

            def client(service):
                patch.asked.append(service)
                if patch.real_clients:
                    patch.kept.append(patch.original(service))
                return patch.fakes[service]

            client.cache_clear = lambda: None
            module.client = client

        spec.loader.exec_module = exec_module
        return spec


def _fakes(seed: dict) -> dict:
    from fakes.dynamodb import FakeDynamoDB
    from fakes.s3 import FakeS3
    from fakes.ses import SimulatedSES
    from fakes.sqs import FakeSQS
    from fakes.ssm import FakeSSM

    ddb = FakeDynamoDB(seed["tables"])
    for table, items in seed["items"].items():
        ddb.seed(table, items)
    objects = {}
    for where, path in seed["s3"].items():
        bucket, _, key = where.partition("/")
        with open(path, "rb") as f:
            objects[(bucket, key)] = f.read()
    return {
        "dynamodb": ddb,
        "s3": FakeS3(objects),
        "sqs": FakeSQS(),
        "ssm": FakeSSM(default=seed.get("ssm_default", "bench-token-secret")),
        "sesv2": SimulatedSES(seed["ses_rate"], latency=None),
    }


def _summary(response) -> str:
    if isinstance(response, dict) and "batchItemFailures" in response:
        return f"batchItemFailures={len(response['batchItemFailures'])}"
    if isinstance(response, dict) and "outcomes" in response:
        return "outcomes=" + ",".join(str(o.get("status")) for o in response["outcomes"])
    if isinstance(response, dict) and "statusCode" in response:
        return f"statusCode={response['statusCode']}"
    return repr(response)[:120]


def _peak_rss_kb(maxrss_kb: int) -> int:
    """This process's own peak RSS. On Linux ru_maxrss survives exec: a child spawned by a large
    parent reports the parent's size. VmHWM belongs to the address space exec made, so it is
    the child's own; ru_maxrss is the fallback where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return maxrss_kb


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    fakes = _fakes(cfg["seed"])  # the same preparation in every mode, baseline included
    patch = _AwsPatch(fakes, cfg.get("real_clients", False))
    out: dict = {"mode": cfg["mode"]}
    if cfg["mode"] == "baseline":
        _marker("start")
        c0, t0 = time.process_time(), time.perf_counter()
        import boto3  # noqa: F401

        out["total_s"], out["cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    else:
        sys.meta_path.insert(0, patch)
        with open(cfg["event"], encoding="utf-8") as f:
            event = json.load(f)  # Lambda hands the handler a parsed event
        module_name, _, attr = cfg["handler"].rpartition(".")
        context = _Context(cfg["function_name"], cfg["timeout"], cfg["memory"])

        _marker("start")
        c0, t0 = time.process_time(), time.perf_counter()
        module = __import__(module_name, fromlist=["_"])  # the C import path, which -X importtime times
        t1 = time.perf_counter()
        response = getattr(module, attr)(event, context)
        t2, c2 = time.perf_counter(), time.process_time()
        out.update(
            total_s=t2 - t0,
            cpu_s=c2 - c0,
            import_s=t1 - t0,
            first_call_s=t2 - t1,
            services=patch.asked,
            response=_summary(response),
        )
        after = cfg.get("after_span")
        if after and patch.original is not None:
            # What creating the clients the first event asked for adds to a real cold start.
            services = list(dict.fromkeys(patch.asked))
            t3 = time.perf_counter()
            if after == "per_session":  # as newsletter/aws.py does now: a boto3 Session per client
                for s in services:
                    patch.original(s)
            else:  # one shared Session
                import boto3

                from newsletter import aws

                session = boto3.session.Session()
                for s in services:
                    session.client(s, config=aws.config_for(s))
            out["client_creation_s"] = time.perf_counter() - t3
            out["client_services"] = services
    out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["peak_rss_kb"] = _peak_rss_kb(out["maxrss_kb"])
    out["modules"] = len(sys.modules)
    with open(cfg["out"], "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
