"""Authentication as an EHR meets it: the real server (gunicorn, two workers) configured with a hospital's
trusted issuers, called over HTTP with tokens signed by keys made here. The checks themselves are tested
one by one in ``test_auth.py``; this file proves they guard every endpoint, hold across processes and
instances, and leave nothing secret in the logs."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.api.errors import WWW_AUTHENTICATE
from cds_service.demo_client import demo_token
from fhir_fixtures import as_of_today as scenario
from fhir_fixtures.requests import service_path
from tests.support import assert_operation_outcome
from tests.support.databases import Backend, raw_text
from tests.support.feedback import accepted
from tests.support.fhir_peer import FhirTestServer
from tests.support.live import LiveServer, clean_environ, free_port, terminate_group
from tests.support.tokens import claims, public_jwk, sign

pytestmark = pytest.mark.live

PUBLIC_BASE = "https://cds.example-hospital.org"  # where the EHR believes it calls us (behind a proxy)
HOSPITAL_ISS = "https://ehr.example-hospital.org"
EPIC_ISS = "https://fhir.example-hospital.org/api/FHIR/R4"
TENANT = "hospital-main"
SELECT = service_path("order-select")


@dataclass(frozen=True)
class Hospital:
    """A hospital's two CDS clients: one signing ES384, one (Epic-style) RS384 with a tenant, and the
    hospital's FHIR server (a real one, Medplum's) that its requests may name as fhirServer."""

    ec_key: ec.EllipticCurvePrivateKey
    rsa_key: rsa.RSAPrivateKey
    issuers_file: Path
    fhir: FhirTestServer
    fhir_token: str

    def token(self, path: str, *, alg: str = "ES384", base: str = PUBLIC_BASE, **extra: Any) -> str:
        if alg == "RS384":
            body = claims(EPIC_ISS, aud=base + path, at=datetime.now(UTC), **{"tenant": TENANT, **extra})
            return sign(self.rsa_key, body, alg="RS384", kid="epic-rsa")
        return sign(self.ec_key, claims(HOSPITAL_ISS, aud=base + path, at=datetime.now(UTC), **extra))


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hospital]:
    folder = tmp_path_factory.mktemp("issuers")
    ec_key = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (folder / "ehr.jwks.json").write_text(json.dumps({"keys": [public_jwk(ec_key, "a-ec")]}))
    (folder / "epic.jwks.json").write_text(json.dumps({"keys": [public_jwk(rsa_key, "epic-rsa")]}))
    fhir_token = f"ehr-access-{uuid.uuid4().hex}"
    with FhirTestServer(env={"FHIR_REQUIRE_TOKEN": fhir_token}) as fhir:
        issuers = {
            "issuers": [
                {
                    "iss": HOSPITAL_ISS,
                    "jwks_file": "ehr.jwks.json",
                    "algorithms": ["ES384"],
                    "fhir_servers": [fhir.url],
                },
                {
                    "iss": EPIC_ISS,
                    "jwks_file": "epic.jwks.json",
                    "algorithms": ["RS384"],
                    "tenants": [TENANT],
                },
            ]
        }
        issuers_file = folder / "trusted-issuers.json"
        issuers_file.write_text(json.dumps(issuers))
        yield Hospital(ec_key, rsa_key, issuers_file, fhir, fhir_token)


def hospital_env(hospital: Hospital, database_url: str) -> dict[str, str]:
    return {
        "NALTREXONE_CDS_TRUSTED_ISSUERS_FILE": str(hospital.issuers_file),
        "NALTREXONE_CDS_PUBLIC_BASE_URL": PUBLIC_BASE,
        "NALTREXONE_CDS_DATABASE_URL": database_url,
        "NALTREXONE_CDS_AUDIT_SECRET": "auth-http-test-secret-0123456789",
        "NALTREXONE_CDS_LOG_LEVEL": "DEBUG",  # the most a deployment could log must still hold no secret
    }


@dataclass
class Deployment:
    hospital: Hospital
    database_url: str
    server: LiveServer

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with self.server.client() as http:
            return http.request(method, path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)


@pytest.fixture(scope="module")
def deployment(
    hospital: Hospital, backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    database_url = backend.new_url()
    server = LiveServer(
        tmp_path_factory.mktemp("auth-http") / "server.log",
        env=hospital_env(hospital, database_url),
        authenticated=True,
    )
    yield Deployment(hospital, database_url, server)
    server.stop()


def naltrexone_request() -> dict[str, Any]:
    """A new start for opioid use disorder (test-dose card), dated today."""
    return scenario("test-dose")


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/cds-services"), ("POST", SELECT), ("POST", SELECT + "/feedback")],
)
def test_a_call_without_a_token_is_a_bare_401(deployment: Deployment, method: str, path: str) -> None:
    response = deployment.call(method, path, json=naltrexone_request() if method == "POST" else None)
    body = assert_operation_outcome(response, 401)
    assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert body["issue"][0]["diagnostics"] == "authentication is required"  # no hint for an attacker


def test_every_refusal_looks_the_same_from_outside(deployment: Deployment) -> None:
    hospital = deployment.hospital
    refused = {
        "no token": None,
        "demo client (not trusted by this hospital)": demo_token(PUBLIC_BASE + SELECT),
        "aud is the address called, not the public URL": hospital.token(SELECT, base=deployment.server.url),
        "service URL presented at another service": hospital.token(service_path("order-sign")),
        "expired": hospital.token(SELECT, exp=int(datetime.now(UTC).timestamp()) - 600),
        "wrong tenant": hospital.token(SELECT, alg="RS384", tenant="another-hospital"),
        "tampered": hospital.token(SELECT)[:-6] + "AAAAAA",
    }
    bodies = set()
    for reason, token in refused.items():
        response = deployment.call("POST", SELECT, token, json=naltrexone_request())
        assert response.status_code == 401, reason
        bodies.add(response.text)
    assert len(bodies) == 1


def test_a_service_token_is_refused_at_the_feedback_endpoint(deployment: Deployment) -> None:
    service_token = deployment.hospital.token(SELECT)
    response = deployment.call(
        "POST", SELECT + "/feedback", service_token, json={"feedback": [{"card": "x"}]}
    )
    assert_operation_outcome(response, 401)


def test_preflight_and_health_need_no_token(deployment: Deployment) -> None:
    preflight = deployment.call(
        "OPTIONS",
        SELECT,
        headers={"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    health = deployment.call("GET", "/health")
    assert health.status_code == 200 and health.json()["authentication"] == "required"


# ------------------------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_a_hospital_token_opens_discovery_service_and_feedback(deployment: Deployment, alg: str) -> None:
    hospital = deployment.hospital
    discovery = deployment.call("GET", "/cds-services", hospital.token("/cds-services", alg=alg))
    assert discovery.status_code == 200, discovery.text
    answer = deployment.call("POST", SELECT, hospital.token(SELECT, alg=alg), json=naltrexone_request())
    assert answer.status_code == 200, answer.text
    (card,) = [card for card in answer.json()["cards"] if card["source"]["topic"]["code"] == "test-dose"]
    feedback = deployment.call(
        "POST",
        SELECT + "/feedback",
        hospital.token(SELECT + "/feedback", alg=alg),
        json={"feedback": [accepted(card)]},
    )
    assert feedback.status_code == 200, feedback.text
    assert feedback.json() == {"recorded": 1, "duplicates": 0}


# --------------------------------------------------------------------------------------------- replay


def test_one_token_sent_eight_times_at_once_is_accepted_once(deployment: Deployment) -> None:
    token = deployment.hospital.token("/cds-services")

    def discover(_: int) -> int:
        return deployment.call("GET", "/cds-services", token).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(discover, range(8)))
    assert statuses == [200] + [401] * 7  # both workers raced for the jti; the database let one win


def test_a_token_replayed_at_another_instance_is_refused(deployment: Deployment, tmp_path: Path) -> None:
    """Two instances behind one load balancer share the audit database, and so the jti memory."""
    other = LiveServer(
        tmp_path / "other.log",
        env=hospital_env(deployment.hospital, deployment.database_url),
        authenticated=True,
    )
    try:
        token = deployment.hospital.token(SELECT)
        first = deployment.call("POST", SELECT, token, json=naltrexone_request())
        with other.client() as http:
            replay = http.post(
                SELECT, json=naltrexone_request(), headers={"Authorization": f"Bearer {token}"}
            )
    finally:
        other.stop()
    assert first.status_code == 200
    assert_operation_outcome(replay, 401)
    assert "replay" in other.logs()


# ------------------------------------------------------------------------------------------- logging


def test_a_full_cycle_leaves_no_token_and_no_patient_id_in_logs_or_database(
    deployment: Deployment,
) -> None:
    access_token = deployment.hospital.fhir_token
    patient = f"pt-{uuid.uuid4().hex[:12]}"
    body = scenario("opioid-active-prescription", patient_id=patient)
    medication_requests = body["prefetch"].pop("medicationRequests")  # left for the EHR's FHIR server
    fhir = deployment.hospital.fhir
    if True:  # the hospital's own FHIR server, named for its issuer in the trusted-issuers file
        fhir.load([entry["resource"] for entry in medication_requests["entry"]])
        body["fhirServer"] = fhir.url
        body["fhirAuthorization"] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/MedicationRequest.read",
            "subject": "naltrexone-cds",
        }
        jwt_service = deployment.hospital.token(SELECT)
        answer = deployment.call("POST", SELECT, jwt_service, json=body)
        card = answer.json()["cards"][0]
        jwt_feedback = deployment.hospital.token(SELECT + "/feedback")
        overridden = {
            "card": card["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-22T10:00:00Z",
        }
        feedback = deployment.call(
            "POST", SELECT + "/feedback", jwt_feedback, json={"feedback": [overridden]}
        )
        replay = deployment.call("POST", SELECT, jwt_service, json=body)
        assert f"Bearer {access_token}" in fhir.received_authorization()  # it went where it belongs
    assert answer.status_code == 200 and feedback.status_code == 200 and replay.status_code == 401
    assert "opioid-active" in {card["source"]["topic"]["code"] for card in answer.json()["cards"]}

    logs = deployment.server.logs()
    assert "fhir fetch" in logs and '"status": 401' in logs  # the log is there, and detailed
    stored = raw_text(deployment.database_url)
    assert card["uuid"] in stored
    claims_and_signatures = [part for token in (jwt_service, jwt_feedback) for part in token.split(".")[1:]]
    for secret in (jwt_service, jwt_feedback, *claims_and_signatures, access_token, patient):
        assert secret not in logs
        assert secret not in stored


# ----------------------------------------------------------------------------- audience and fhirServer


OTHER_VENDOR = "https://cds.other.test"  # another vendor's CDS service, for which an EHR minted a token


def test_a_token_minted_for_another_service_is_refused_whatever_host_the_caller_claims(
    deployment: Deployment,
) -> None:
    """The attack from issue 12: a token whose aud is another vendor's service, replayed here with that
    vendor's Host and X-Forwarded-Proto. The audience comes from the configured public base URL."""
    token = deployment.hospital.token(SELECT, base=OTHER_VENDOR)
    spoofed = {"Host": "cds.other.test", "X-Forwarded-Proto": "https"}
    answer = deployment.call("POST", SELECT, token, json=naltrexone_request(), headers=spoofed)
    assert answer.status_code == 401
    genuine = deployment.call("POST", SELECT, deployment.hospital.token(SELECT), json=naltrexone_request())
    assert genuine.status_code == 200


def test_with_allowed_hosts_another_host_is_refused_and_forwarded_headers_are_not_trusted(
    hospital: Hospital, backend: Backend, tmp_path: Path
) -> None:
    env = {
        **hospital_env(hospital, backend.new_url()),
        "NALTREXONE_CDS_ALLOWED_HOSTS": "cds.example-hospital.org",
    }
    del env["NALTREXONE_CDS_PUBLIC_BASE_URL"]
    server = LiveServer(tmp_path / "server.log", env=env, workers=1, authenticated=True)
    try:
        with server.client() as http:

            def call(base: str, headers: dict[str, str]) -> int:
                token = hospital.token(SELECT, base=base)
                auth = {"Authorization": f"Bearer {token}", **headers}
                return http.post(SELECT, json=naltrexone_request(), headers=auth).status_code

            spoofed_host = call(OTHER_VENDOR, {"Host": "cds.other.test", "X-Forwarded-Proto": "https"})
            # X-Forwarded-Proto from loopback is not trusted: the URL called is http://, not https://
            spoofed_scheme = call(
                "https://cds.example-hospital.org",
                {"Host": "cds.example-hospital.org", "X-Forwarded-Proto": "https"},
            )
            allowed = call("http://cds.example-hospital.org", {"Host": "cds.example-hospital.org"})
    finally:
        server.stop()
    assert spoofed_host == 400
    assert spoofed_scheme == 401
    assert allowed == 200


def test_real_issuers_without_a_public_base_url_or_allowed_hosts_refuse_to_start(hospital: Hospital) -> None:
    command = [str(Path(sys.executable).with_name("naltrexone-cds")), "serve", "--port", str(free_port())]
    env = {**clean_environ(), "NALTREXONE_CDS_TRUSTED_ISSUERS_FILE": str(hospital.issuers_file)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "NALTREXONE_CDS_PUBLIC_BASE_URL" in result.stderr
    assert "NALTREXONE_CDS_ALLOWED_HOSTS" in result.stderr


def test_a_fhir_server_that_is_not_the_callers_own_is_never_queried(deployment: Deployment) -> None:
    """The hospital's issuer may name only its own FHIR server: a request naming another host (here a
    second real FHIR server, which would answer) gets the data-gap cards, and that host sees nothing."""
    body = scenario("opioid-active-prescription")
    body["prefetch"].pop("medicationRequests")
    with FhirTestServer() as elsewhere:
        body["fhirServer"] = elsewhere.url
        body["fhirAuthorization"] = {
            "access_token": "would-leak",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/MedicationRequest.read",
            "subject": "naltrexone-cds",
        }
        answer = deployment.call("POST", SELECT, deployment.hospital.token(SELECT), json=body)
        assert elsewhere.received_authorization() == []
    assert answer.status_code == 200
    cards = {card["source"]["topic"]["code"]: card for card in answer.json()["cards"]}
    assert cards["opioid-history-unverified"]["indicator"] == "warning"
    refusals = [
        json.loads(line) for line in deployment.server.logs().splitlines() if "fhirServer refused" in line
    ]
    assert refusals and "calling system" in refusals[-1]["reason"]


# ------------------------------------------------------------------------------------------ start-up


def test_running_without_authentication_is_announced_loudly(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "server.log", workers=1)  # NALTREXONE_CDS_ALLOW_UNAUTHENTICATED=true
    try:
        with server.client() as http:
            discovery = http.get("/cds-services")
            health = http.get("/health").json()
    finally:
        server.stop()
    assert discovery.status_code == 200
    assert health["authentication"] == "off"
    warnings = [json.loads(line) for line in server.logs().splitlines() if "AUTHENTICATION IS OFF" in line]
    assert warnings and warnings[0]["level"] == "WARNING"


def test_by_default_the_demo_client_is_trusted_on_loopback(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "server.log", workers=1, authenticated=True)
    try:
        with server.client() as http:
            anonymous = http.get("/cds-services")
            demo = http.get(
                "/cds-services",
                headers={"Authorization": f"Bearer {demo_token(server.url + '/cds-services')}"},
            )
    finally:
        server.stop()
    assert anonymous.status_code == 401
    assert demo.status_code == 200
    assert "DEMO ISSUERS TRUSTED" in server.logs()


def test_the_demo_issuers_are_refused_off_loopback() -> None:
    command = [str(Path(sys.executable).with_name("naltrexone-cds")), "serve", "--host", "0.0.0.0"]
    command += ["--port", str(free_port())]
    process = subprocess.Popen(
        command,
        env=clean_environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        terminate_group(process)
    assert process.returncode != 0
    assert b"refusing to listen on 0.0.0.0" in output
    assert b"NALTREXONE_CDS_TRUSTED_ISSUERS_FILE" in output
