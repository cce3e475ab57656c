"""``naltrexone-cds check URL`` run as an integrator runs it (a subprocess) against real servers started
here: a correctly deployed one passes every check; deliberately misconfigured ones (authentication off,
CORS closed to the EHR's origin, a local policy that changes a scenario's outcome, a stand-in that drops a
service and breaks the card contract) fail, each naming the check that caught it."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import cds_service
from cds_service.check import Report, Result, render_table
from cds_service.check.scenarios import card_contract_problems, load_scenarios
from cds_service.check.target import base_url_of
from cds_service.check.tokens import jwk_thumbprint, with_wrong_signature
from cds_service.cli import main
from cds_service.demo_client import ISSUER as DEMO_ISSUER
from cds_service.demo_client import demo_token
from tests.support.live import LiveServer, clean_environ, closed_port
from tests.support.tokens import public_jwk

COMMAND = str(Path(sys.executable).with_name("naltrexone-cds"))
AUTH_DATA = Path(cds_service.__file__).parent / "auth_data"
PROTOCOL_CHECKS = {
    "health",
    "health-ready",
    "discovery",
    "cors-preflight",
    "auth-no-token",
    "auth-bad-signature",
    "auth-replayed-token",
    "error-malformed-json",
    "error-wrong-content-type",
    "error-unknown-service",
    "feedback-endpoint",
}
HOSPITAL_ISS = "https://ehr.example-hospital.org"
EPIC_ISS = "https://fhir.example-hospital.org/api/FHIR/R4"


def check(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, "check", url, *options],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_environ(),
        check=False,
    )


def rows(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """The checks of a ``--json`` run, by name."""
    report = json.loads(done.stdout)
    return {row["name"]: row for row in report["checks"]}


def failures(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {name: row["reason"] for name, row in rows(done).items() if row["result"] == "fail"}


def start(tmp_path: Path, env: dict[str, str] | None = None, *, authenticated: bool = True) -> LiveServer:
    database = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    return LiveServer(
        tmp_path / "server.log",
        env={**clean_environ(), "NALTREXONE_CDS_DATABASE_URL": database, **(env or {})},
        workers=1,
        authenticated=authenticated,
    )


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Deployed as the README's Run it says: authentication on, trusting the bundled demo issuers."""
    folder = tmp_path_factory.mktemp("check-demo")
    server = LiveServer(
        folder / "server.log",
        env={**clean_environ(), "NALTREXONE_CDS_DATABASE_URL": f"sqlite:///{folder / 'audit.sqlite3'}"},
        authenticated=True,
    )
    yield server
    server.stop()


# ------------------------------------------------------------------------------------ a good deployment


@pytest.mark.live
def test_a_correct_deployment_passes_every_check(demo_server: LiveServer) -> None:
    done = check(demo_server.url, "--demo", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    found = rows(done)
    scenarios = {f"scenario:{scenario.name}" for scenario in load_scenarios()}
    assert set(found) == PROTOCOL_CHECKS | scenarios
    assert len(scenarios) >= 100
    not_passed = {name: row["reason"] for name, row in found.items() if row["result"] != "pass"}
    assert not not_passed
    assert "401" in found["auth-no-token"]["reason"]
    assert "test-dose (warning)" in found["scenario:test-dose"]["reason"]
    assert all(row["ms"] > 0 for row in found.values())


@pytest.mark.live
def test_tokens_from_a_command_get_the_url_called_and_are_fresh_for_each_call(
    demo_server: LiveServer, tmp_path: Path
) -> None:
    """An integrator's own signing script (here: the demo client's key, read by a script of theirs)."""
    calls = tmp_path / "calls.txt"
    kid = json.loads((AUTH_DATA / "local-demo-jwks.json").read_text())["keys"][0]["kid"]
    script = tmp_path / "sign.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, time, uuid, jwt
            aud = os.environ["NALTREXONE_CDS_CHECK_AUD"]
            with open({str(calls)!r}, "a") as log:
                log.write(aud + "\\n")
            key = open({str(AUTH_DATA / "local-demo-private-key.pem")!r}, "rb").read()
            now = int(time.time())
            claims = {{"iss": {DEMO_ISSUER!r}, "aud": aud, "iat": now, "exp": now + 60}}
            claims["jti"] = str(uuid.uuid4())
            print(jwt.encode(claims, key, algorithm="ES384", headers={{"kid": {kid!r}}}))
            """
        )
    )
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    done = check(demo_server.url, "--token-command", command, "--only", "protocol", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(rows(done)) == PROTOCOL_CHECKS
    assert all(row["result"] == "pass" for row in rows(done).values())
    audiences = calls.read_text().splitlines()
    assert demo_server.url + "/cds-services" in audiences
    assert demo_server.url + "/cds-services/naltrexone-order-select/feedback" in audiences
    # one run of the command per authenticated call: discovery, bad signature, replay, malformed JSON,
    # wrong content type, unknown service, feedback
    assert len(audiences) == 7


@pytest.mark.live
def test_a_failing_token_command_stops_the_run_with_status_2(demo_server: LiveServer) -> None:
    done = check(demo_server.url, "--token-command", "echo 'no key for this issuer' >&2; exit 3")
    assert done.returncode == 2
    assert "token command exited with status 3: no key for this issuer" in done.stderr


@pytest.mark.live
def test_without_tokens_an_instance_with_authentication_on_fails_saying_no_token_was_sent(
    demo_server: LiveServer,
) -> None:
    done = check(demo_server.url, "--allow-unauthenticated", "--only", "protocol", "--json")
    assert done.returncode == 1
    failed = failures(done)
    assert failed["discovery"].startswith("HTTP 401: authentication is on and no token was sent")
    assert rows(done)["auth-no-token"]["result"] == "pass"
    assert rows(done)["auth-bad-signature"]["result"] == "skip"


# ------------------------------------------------------------------------------------ a hospital's keys


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    """Real issuers: an ES384 client with its kid, an Epic-style RS384 client with a tenant whose JWKS
    names its key by RFC 7638 thumbprint. Yields the server and the folder holding the private keys."""
    folder = tmp_path_factory.mktemp("check-hospital")
    ec_key = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for name, key in (("ehr", ec_key), ("epic", rsa_key)):
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (folder / f"{name}.pem").write_bytes(pem)
    (folder / "ehr.jwks.json").write_text(json.dumps({"keys": [public_jwk(ec_key, "ehr-1")]}))
    epic_kid = jwk_thumbprint(rsa_key.public_key())
    (folder / "epic.jwks.json").write_text(json.dumps({"keys": [public_jwk(rsa_key, epic_kid)]}))
    issuers = {
        "issuers": [
            {"iss": HOSPITAL_ISS, "jwks_file": "ehr.jwks.json", "algorithms": ["ES384"]},
            {"iss": EPIC_ISS, "jwks_file": "epic.jwks.json", "algorithms": ["RS384"], "tenants": ["main"]},
        ]
    }
    (folder / "trusted-issuers.json").write_text(json.dumps(issuers))
    env = {
        "NALTREXONE_CDS_TRUSTED_ISSUERS_FILE": str(folder / "trusted-issuers.json"),
        "NALTREXONE_CDS_ALLOWED_HOSTS": "127.0.0.1",  # the aud is then the URL called, whatever the port
    }
    server = start(folder, env)
    yield server, folder
    server.stop()


@pytest.mark.live
def test_tokens_signed_with_a_hospital_key_pass(hospital: tuple[LiveServer, Path]) -> None:
    server, keys = hospital
    ehr = ("--private-key", str(keys / "ehr.pem"), "--issuer", HOSPITAL_ISS, "--kid", "ehr-1")
    done = check(server.url, *ehr, "--only", "protocol", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not failures(done)
    # RS384 with a tenant, the kid defaulting to the key's thumbprint (as the JWKS names it)
    epic = ("--private-key", str(keys / "epic.pem"), "--issuer", EPIC_ISS, "--tenant", "main")
    done = check(server.url, *epic, "--alg", "RS384", "--only", "protocol", "--json")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.live
def test_a_key_the_instance_does_not_trust_fails_the_authenticated_checks(
    hospital: tuple[LiveServer, Path], tmp_path: Path
) -> None:
    server, _ = hospital
    stranger = ec.generate_private_key(ec.SECP384R1())
    pem = tmp_path / "stranger.pem"
    pem.write_bytes(
        stranger.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    done = check(server.url, "--private-key", str(pem), "--issuer", HOSPITAL_ISS, "--kid", "ehr-1", "--json")
    assert done.returncode == 1
    failed = failures(done)
    assert "does not trust this issuer/key" in failed["discovery"]
    assert "scenario:test-dose" in failed
    assert "auth-no-token" not in failed and "cors-preflight" not in failed


# ------------------------------------------------------------------------------------ misconfigurations


@pytest.mark.live
def test_an_instance_with_authentication_off_fails_the_401_check(tmp_path: Path) -> None:
    server = start(tmp_path, authenticated=False)  # NALTREXONE_CDS_ALLOW_UNAUTHENTICATED=true
    try:
        done = check(server.url, "--demo", "--only", "protocol", "--json")
        accepted = check(server.url, "--allow-unauthenticated", "--only", "protocol", "--json")
    finally:
        server.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    assert failures(done) == {
        "auth-no-token": "authentication is off: the service answered a call without a token (HTTP 200)"
    }
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert rows(accepted)["auth-no-token"]["result"] == "pass"
    assert rows(accepted)["auth-bad-signature"]["result"] == "skip"


@pytest.mark.live
def test_an_instance_whose_cors_does_not_allow_the_ehr_origin_fails_the_cors_check(tmp_path: Path) -> None:
    server = start(tmp_path, {"NALTREXONE_CDS_CORS_ORIGINS": "https://ehr.example-hospital.org"})
    try:
        done = check(server.url, "--demo", "--only", "protocol", "--json")
        own_origin = check(
            server.url, "--demo", "--only", "protocol", "--origin", "https://ehr.example-hospital.org"
        )
    finally:
        server.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    failed = failures(done)
    assert set(failed) == {"cors-preflight"}
    assert "origin https://sandbox.cds-hooks.org is not allowed" in failed["cors-preflight"]
    assert own_origin.returncode == 0, own_origin.stdout + own_origin.stderr
    assert "PASS: 11 checks" in own_origin.stdout


@pytest.mark.live
def test_a_local_policy_that_changes_an_outcome_fails_that_scenario(tmp_path: Path) -> None:
    # A positive urine screen counts for 2 days instead of 14: the screen 3 days ago no longer stops a start.
    policy = tmp_path / "policy.yaml"
    policy.write_text("uds_positive_lookback_days: 2\n")
    server = start(tmp_path, {"NALTREXONE_CDS_POLICY_FILE": str(policy)})
    try:
        done = check(server.url, "--demo", "--only", "scenarios", "--json")
    finally:
        server.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    failed = failures(done)
    assert failed["scenario:uds-positive"].startswith("expected: no uds-positive card")
    assert "scenario:test-dose" not in failed and len(failed) < 20  # the others still pass


class StandIn(BaseHTTPRequestHandler):
    """An instance that is not this service: it lists one service of three, answers every call to a
    naltrexone service with a card that breaks the contract, has no feedback endpoint, and answers
    anything else with an HTML error page."""

    CARD: ClassVar[dict[str, Any]] = {
        "uuid": "3f7a9b1e-0c4d-4e5f-8a6b-7c8d9e0f1a2b",
        "summary": "Naltrexone " + "x" * 150,
        "indicator": "urgent",
        "source": {"label": "stand-in", "topic": {"system": "urn:x", "code": "test-dose"}},
    }

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        elif self.path == "/cds-services":
            service = {"id": "naltrexone-order-select", "hook": "order-select", "description": "stand-in"}
            self._json(200, {"services": [service]})
        else:
            self._html(404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/feedback"):
            self._html(404)
        elif self.path.startswith("/cds-services/naltrexone-"):
            self._json(200, {"cards": [self.CARD]})
        else:
            self._html(500)

    def _json(self, status: int, body: Any) -> None:
        self._send(status, "application/json", json.dumps(body).encode())

    def _html(self, status: int) -> None:
        self._send(status, "text/html", b"<html><body>Internal Server Error</body></html>")

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.live
def test_a_stand_in_missing_a_service_and_breaking_the_card_contract_fails_those_checks() -> None:
    http = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        done = check(f"http://127.0.0.1:{http.server_address[1]}", "--demo", "--json")
    finally:
        http.shutdown()
        http.server_close()
        thread.join()
    assert done.returncode == 1, done.stdout + done.stderr
    failed = failures(done)
    assert "service naltrexone-order-sign (order-sign) is missing" in failed["discovery"]
    contract = failed["scenario:test-dose"]
    assert contract.startswith("contract: card 1 (test-dose) ")
    assert "summary is 161 characters, more than 139" in contract
    assert "indicator is 'urgent', not one of info, warning, critical" in contract
    assert failed["auth-no-token"].startswith("authentication is off")
    assert failed["error-malformed-json"] == "malformed JSON: HTTP 200, not a 4xx"
    assert failed["error-unknown-service"] == "an unknown service: HTTP 500, not a 4xx"
    assert "no feedback endpoint" in failed["feedback-endpoint"]
    assert rows(done)["health"]["result"] == "pass"


# ------------------------------------------------------------------------------------ usage


def test_nothing_answering_at_the_url_is_status_2() -> None:
    with closed_port() as port:
        done = check(f"http://127.0.0.1:{port}", "--demo")
    assert done.returncode == 2
    assert f"nothing answers at http://127.0.0.1:{port}" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((), "give a token source"),
        (("--demo", "--token-command", "true"), "not --demo and --token-command"),
        (("--issuer", HOSPITAL_ISS), "go with --private-key"),
        (("--demo", "--timezone", "Mars/Olympus"), "not an IANA time zone"),
        (("--demo", "--only", "everything"), "'everything' is not one of"),
    ],
)
def test_usage_errors_are_status_2(options: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(main, ["check", "http://127.0.0.1:1", *options])
    assert result.exit_code == 2
    assert message in result.output


def test_a_key_that_cannot_sign_the_algorithm_is_a_usage_error(tmp_path: Path) -> None:
    pem = tmp_path / "p256.pem"
    pem.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    result = CliRunner().invoke(
        main, ["check", "http://127.0.0.1:1", "--private-key", str(pem), "--issuer", "x"]
    )
    assert result.exit_code == 2
    assert "cannot sign ES384" in result.output


# ------------------------------------------------------------------------------------ the parts


def test_the_base_url_is_the_service_root_whether_or_not_cds_services_is_given() -> None:
    assert base_url_of("https://cds.example.org/") == "https://cds.example.org"
    assert base_url_of("https://cds.example.org/proxy/cds-services/") == "https://cds.example.org/proxy"
    for bad in ("cds.example.org", "ftp://cds.example.org", "https://cds.example.org/?x=1"):
        with pytest.raises(ValueError):
            base_url_of(bad)


def test_the_default_kid_is_the_rfc_7638_thumbprint() -> None:
    # RFC 7638 section 3.1: this RSA key's thumbprint is NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
        "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgd"
        "AZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur"
        "-kEgU8awapJzKnqDKgw"
    )
    public = jwt.algorithms.RSAAlgorithm.from_jwk({"kty": "RSA", "n": n, "e": "AQAB"})
    assert isinstance(public, rsa.RSAPublicKey)
    assert jwk_thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_a_wrong_signature_keeps_the_header_and_claims() -> None:
    token = demo_token("http://127.0.0.1:8000/cds-services")
    forged = with_wrong_signature(token)
    assert forged.rsplit(".", 1)[0] == token.rsplit(".", 1)[0]
    assert forged.rsplit(".", 1)[1] != token.rsplit(".", 1)[1]
    key = jwt.PyJWKSet.from_dict(json.loads((AUTH_DATA / "local-demo-jwks.json").read_text())).keys[0]
    jwt.decode(token, key.key, algorithms=["ES384"], audience="http://127.0.0.1:8000/cds-services")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key.key, algorithms=["ES384"], audience="http://127.0.0.1:8000/cds-services")


def test_card_contract_problems_name_the_card_and_the_field() -> None:
    topic = {"system": "urn:x", "code": "test-dose"}
    good: dict[str, Any] = {
        "uuid": "3f7a9b1e-0c4d-4e5f-8a6b-7c8d9e0f1a2b",
        "summary": "Give a 25 mg test dose first.",
        "indicator": "warning",
        "source": {"label": "FDA label", "topic": topic},
    }
    assert card_contract_problems({"cards": []}) == []
    assert card_contract_problems({"cards": [good]}) == []
    no_label = {**good, "source": {"topic": topic}}
    delete_without_id = {
        **good,
        "selectionBehavior": "at-most-one",
        "suggestions": [
            {"label": "Cancel", "uuid": good["uuid"], "actions": [{"type": "delete", "description": "x"}]}
        ],
    }
    problems = card_contract_problems({"cards": [good, no_label, delete_without_id, {**good, "detail": ""}]})
    assert "card 2 (test-dose) source: 'label' is a required property" in problems
    assert any(p.startswith("card 3 (test-dose) suggestions[0].actions[0]") for p in problems), problems
    assert any(p.startswith("card 4 (test-dose) detail") for p in problems), problems
    assert "cards[3].detail is empty (CDS Hooks forbids null and empty values)" in problems


def test_the_table_has_a_row_per_check_and_a_summary() -> None:
    report = Report(
        "https://cds.example.org",
        (
            Result("discovery", "protocol", "pass", "3 services", 12.4),
            Result("auth-no-token", "protocol", "fail", "authentication is off", 3.0),
            Result("health-ready", "protocol", "skip", "not provided", 1.0),
        ),
        0.5,
    )
    lines = render_table(report).splitlines()
    assert lines[0].split() == ["check", "result", "ms", "reason"]
    assert lines[2].split(maxsplit=3) == ["auth-no-token", "FAIL", "3", "authentication is off"]
    assert lines[-1] == (
        "FAIL: 3 checks against https://cds.example.org: 1 passed, 1 failed, 1 skipped (0.5 s)"
    )
    assert not report.ok
