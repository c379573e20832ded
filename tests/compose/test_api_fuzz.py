"""Every operation of both APIs fuzzed through the composed router with
schemathesis, against the OpenAPI documents the APIs serve themselves.

One `schemathesis run` per document, the Auth API's first: its POST /token
is limited to one request a second (schemathesis.toml), inside the router's
per-client limit, and the Transaction API's run asks the same endpoint for a
new token now and then (api_fuzz_hooks.py); one after the other, the two
never share the router's budget. Every check runs (--checks all), and any
failure, error or 429 fails the run.

The test runs after the other platform tests (conftest.py orders it) since
it spends the router's token budget, which those ask for directly. What it
found is in build/api-fuzz/: each run's output (<api>.log) and JSON report,
and result.json with the figures that scripts/test prints as the
`api: schemathesis` stage.

Environment:
  API_FUZZ_MAX_EXAMPLES   cases per operation in the fuzzing phase (default
                          1500; POST /token has its own, in schemathesis.toml)
  API_FUZZ_TIMEOUT        seconds both runs may take together (default 180)
  API_FUZZ_SEED           schemathesis's seed, to repeat a run (its log names
                          the seed it used)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Platform

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "schemathesis.toml"
HOOKS = HERE / "api_fuzz_hooks.py"
ROUTER_CFG = REPO / "containers" / "router" / "haproxy.cfg"
OUT = REPO / "build" / "api-fuzz"
RESULT = OUT / "result.json"
# The demo password as a libFuzzer dictionary, which schemathesis.toml mixes
# into the generated token requests (its path is written there too).
PASSWORD_DICTIONARY = OUT / "demo-password.dict"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = int(os.environ.get("API_FUZZ_MAX_EXAMPLES", "1500"))
TIMEOUT = float(os.environ.get("API_FUZZ_TIMEOUT", "180"))
# A case that hangs fails as one case instead of using up the run's time.
REQUEST_TIMEOUT = 10
# The token rate schemathesis.toml sets for POST /token, in requests per second.
TOKEN_REQUESTS_PER_SECOND = 1
# The user whose tokens the Transaction API's run sends: one who may transact,
# so that valid transactions get their 202.
FUZZ_USER = "alice"


@dataclass(frozen=True)
class Api:
    name: str
    prefix: str
    hooks: Path | None


APIS = (
    Api("auth", "/authentication", None),
    Api("transactions", "/transactions", HOOKS),
)


def router_token_limit() -> tuple[int, int]:
    """(requests, seconds): what the router lets one client send to
    /authentication/token before it answers 429."""
    text = ROUTER_CFG.read_text()
    period = re.search(r"store http_req_rate\((\d+)s\)", text)
    limit = re.search(r"sc_http_req_rate\(0,token_rate\) gt (\d+)", text)
    assert period and limit, f"no token rate limit found in {ROUTER_CFG}"
    return int(limit.group(1)), int(period.group(1))


def run_schemathesis(platform: Platform, api: Api, timeout: float) -> dict[str, Any]:
    """One `schemathesis run` over one API's document; its figures."""
    report = OUT / f"{api.name}.json"
    report.unlink(missing_ok=True)
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{platform.base_url}{api.prefix}/openapi.json",
        "--url",
        f"{platform.base_url}{api.prefix}",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--request-timeout",
        str(REQUEST_TIMEOUT),
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--generation-database",
        "none",
        "--no-color",
        # The router's HTTPS certificate, verified against the compose CA.
        "--tls-verify",
        str(platform.ca_file),
    ]
    if os.environ.get("API_FUZZ_SEED"):
        command += ["--seed", os.environ["API_FUZZ_SEED"]]
    env = dict(os.environ)
    env.pop("SCHEMATHESIS_HOOKS", None)
    if api.hooks is not None:
        env.update(
            SCHEMATHESIS_HOOKS=str(api.hooks),
            API_FUZZ_TOKEN_URL=f"{platform.base_url}/authentication/token",
            API_FUZZ_USERNAME=FUZZ_USER,
            API_FUZZ_PASSWORD_FILE=str(platform.secrets / "demo.password"),
            API_FUZZ_CA_FILE=str(platform.ca_file),
        )
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        output, returncode = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as expired:
        # What a killed run printed comes as bytes, whatever text= said.
        partial = (
            part.decode(errors="replace") for part in (expired.stdout, expired.stderr) if part
        )
        output = "".join(partial) + f"\n(stopped after {timeout:.0f} s, API_FUZZ_TIMEOUT)\n"
        returncode = None
    seconds = round(time.monotonic() - started, 1)
    (OUT / f"{api.name}.log").write_text(output)
    figures: dict[str, Any] = {
        "api": api.name,
        "returncode": returncode,
        "seconds": seconds,
        "log": str(OUT / f"{api.name}.log"),
        "output_tail": output[-6000:],
    }
    if report.exists():
        summary = json.loads(report.read_text())
        cases = summary["test_cases"]
        figures.update(
            seed=summary["seed"],
            operations=summary["operations"]["tested"],
            cases=cases["generated"],
            cases_with_failures=cases["with_failures"],
            unique_failures=cases["unique_failures"],
            errors=len(summary["errors"]),
            rate_limited=len(summary["warnings"]["rate_limited"]),
        )
    return figures


@pytest.mark.api_fuzz
def test_every_operation_of_both_apis_passes_every_check(platform: Platform) -> None:
    limit, period = router_token_limit()
    assert TOKEN_REQUESTS_PER_SECOND * period <= limit, (
        f"the router allows {limit} token requests per {period} s, fewer than "
        f"schemathesis.toml's {TOKEN_REQUESTS_PER_SECOND} a second: lower its rate-limit"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    RESULT.unlink(missing_ok=True)
    PASSWORD_DICTIONARY.write_text(json.dumps(platform.password) + "\n")
    started = time.monotonic()
    deadline = started + TIMEOUT
    runs: list[dict[str, Any]] = []
    try:
        # The other tests' token requests leave the router's window once a
        # period has passed since the last of them.
        time.sleep(max(0.0, platform.last_token_request + period - time.monotonic()))
        for api in APIS:
            runs.append(run_schemathesis(platform, api, max(1.0, deadline - time.monotonic())))
    finally:
        passed = len(runs) == len(APIS) and all(run["returncode"] == 0 for run in runs)
        result = {
            "passed": passed,
            "seconds": round(time.monotonic() - started, 1),
            "max_examples": MAX_EXAMPLES,
            "cases": sum(run.get("cases", 0) for run in runs),
            "failures": sum(run.get("cases_with_failures", 0) for run in runs),
            "errors": sum(run.get("errors", 0) for run in runs),
            "runs": [{k: v for k, v in run.items() if k != "output_tail"} for run in runs],
        }
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\napi fuzz: {json.dumps(result)}")
    for run in runs:
        assert run["returncode"] == 0, (
            f"schemathesis on the {run['api']} API: exit code {run['returncode']} "
            f"(full output: {run['log']}):\n{run['output_tail']}"
        )
