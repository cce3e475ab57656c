"""deploy/nginx/naltrexone-cds.conf in front of the real service: Debian's nginx, run unprivileged on free
loopback ports with the file's listen ports, certificate and log paths and upstream port rewritten (and
nothing else), TLS with a certificate made here.

Two service configurations sit behind it. With ``allowed-hosts`` the JWT audience is built from the request,
so a token for the https URL is accepted only if nginx's X-Forwarded-Proto (and Host) reached the service
and was trusted; the same call made straight to gunicorn is refused. With ``public-base-url`` (what
deploy/kubernetes configures) the audience is fixed, so that mode shows the production settings work
through the proxy but cannot show the header arrives.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pwd
import re
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cds_service.demo_client import demo_token
from cds_service.settings import documented_settings
from fhir_fixtures import as_of_today
from tests.support.live import LiveServer, clean_environ, free_port, terminate_group

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "deploy" / "nginx" / "naltrexone-cds.conf"
SELECT = "/cds-services/naltrexone-order-select"
MODES = ("allowed-hosts", "public-base-url")


def nginx_path() -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which("nginx", path=search)
    if found is None:
        pytest.fail("nginx is not installed: apt-get install -y nginx (.ci/run does it)")
    return found


def max_body_bytes() -> int:
    return int(next(d for v, d, _ in documented_settings() if v == "NALTREXONE_CDS_MAX_BODY_BYTES"))


# -- the certificate: a throwaway CA and a server certificate for localhost and 127.0.0.1


def write_certificates(folder: Path) -> Path:
    """Writes server.pem (chain) and server.key; returns the CA file a client should trust."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "naltrexone-cds test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "server.pem").write_bytes(server.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "server.key").chmod(0o600)
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    return folder / "ca.pem"


# -- the configuration: the shipped file, rewritten only where a test machine must differ


def rendered_site(folder: Path, *, http_port: int, https_port: int, upstream_port: int) -> str:
    text = SITE.read_text(encoding="utf-8")
    rewrites: list[tuple[str, str, int]] = [
        (r"\blisten 80;", f"listen 127.0.0.1:{http_port};", 1),
        (r"\blisten 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", 1),
        # IPv6 loopback is not a given on CI machines; the IPv4 listens above carry the tests
        (r"^\s*listen \[::\]:(?:80|443)\b[^;]*;\n", "", 2),
        (r"\bserver 127\.0\.0\.1:8000;", f"server 127.0.0.1:{upstream_port};", 1),
        (r"\bssl_certificate\s+\S+;", f"ssl_certificate {folder / 'server.pem'};", 1),
        (r"\bssl_certificate_key\s+\S+;", f"ssl_certificate_key {folder / 'server.key'};", 1),
        (r"/var/log/nginx/", f"{folder}/", 2),
    ]
    for pattern, replacement, expected in rewrites:

        def literal(_: re.Match[str], text: str = replacement) -> str:
            return text  # inserted as it is: no backslash in a path can be read as an escape

        text, made = re.subn(pattern, literal, text, flags=re.M)
        assert made == expected, (
            f"{SITE.relative_to(ROOT)}: {made} match(es) of {pattern!r}, expected {expected}; "
            "the file changed shape: update this test's rewrites with it"
        )
    return text


def main_config(folder: Path) -> str:
    """What /etc/nginx/nginx.conf gives a site file on Debian, reduced to a scratch directory."""
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return "\n".join(
        [
            "daemon off;",
            "worker_processes 1;",
            f"pid {folder / 'nginx.pid'};",
            f"error_log {folder / 'error.log'} info;",
            "events { worker_connections 128; }",
            "http {",
            temp,
            f"    access_log {folder / 'access.log'};",
            f"    include {folder / 'site.conf'};",
            "}",
            "",
        ]
    )


@dataclass
class Proxied:
    mode: str
    server: LiveServer
    https_port: int
    http_port: int
    tls: ssl.SSLContext
    folder: Path

    @property
    def public_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def client(self) -> httpx.Client:
        # connect to 127.0.0.1 (localhost may resolve to ::1 first); say "localhost", as an EHR names the host
        return httpx.Client(
            base_url=f"https://127.0.0.1:{self.https_port}",
            headers={"Host": f"localhost:{self.https_port}"},
            verify=self.tls,
            timeout=60.0,
        )

    def auth(self, path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {demo_token(self.public_url + path)}"}

    def nginx_log(self) -> str:
        return (self.folder / "error.log").read_text(encoding="utf-8", errors="replace")


def _run_as() -> dict[str, Any]:
    """Popen arguments that keep nginx unprivileged: as root (CI containers), become nobody."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _give_to(folder: Path, run_as: dict[str, Any]) -> None:
    if not run_as:
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, run_as["user"], run_as["group"])


def _wait_for_tls(process: subprocess.Popen[bytes], port: int, tls: ssl.SSLContext, folder: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{_read(folder / 'error.log')}")
        try:
            httpx.get(f"https://127.0.0.1:{port}/health", verify=tls, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"nginx did not answer on {port}:\n{_read(folder / 'error.log')}")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else "(no log)"


@pytest.fixture(scope="module", params=MODES)
def proxied(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    nginx = nginx_path()
    mode: str = request.param
    https_port, http_port = free_port(), free_port()
    logs = tmp_path_factory.mktemp(f"nginx-{mode}")
    env = {
        **clean_environ(),
        "NALTREXONE_CDS_DATABASE_URL": f"sqlite:///{logs / 'audit.sqlite3'}",
        "NALTREXONE_CDS_FORWARDED_ALLOW_IPS": "127.0.0.1",
        "NALTREXONE_CDS_METRICS_PORT": "0",
    }
    if mode == "allowed-hosts":
        env["NALTREXONE_CDS_ALLOWED_HOSTS"] = f"localhost:{https_port}"
    else:
        env["NALTREXONE_CDS_PUBLIC_BASE_URL"] = f"https://localhost:{https_port}"
    server = LiveServer(logs / "server.log", env=env, authenticated=True)
    # nginx's own scratch directory: outside pytest's (root-only) tree so that nobody can use it
    folder = Path(tempfile.mkdtemp(prefix="naltrexone-cds-nginx-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        ca = write_certificates(folder)
        tls = ssl.create_default_context(cafile=str(ca))
        site = rendered_site(folder, http_port=http_port, https_port=https_port, upstream_port=server.port)
        (folder / "site.conf").write_text(site, encoding="utf-8")
        (folder / "nginx.conf").write_text(main_config(folder), encoding="utf-8")
        run_as = _run_as()
        _give_to(folder, run_as)
        command = [
            nginx,
            "-p",
            f"{folder}/",
            "-c",
            str(folder / "nginx.conf"),
            "-e",
            str(folder / "error.log"),
        ]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30, **run_as)
        assert checked.returncode == 0, f"nginx -t refused the configuration:\n{checked.stderr}\n{site}"
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **run_as
        )
        _wait_for_tls(process, https_port, tls, folder)
        yield Proxied(mode, server, https_port, http_port, tls, folder)
    finally:
        if process is not None:
            terminate_group(process)
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_discovery_answers_over_https_with_hsts(proxied: Proxied) -> None:
    with proxied.client() as client:
        response = client.get("/cds-services", headers=proxied.auth("/cds-services"))
    assert response.status_code == 200, response.text
    assert "naltrexone-order-select" in [service["id"] for service in response.json()["services"]]
    assert response.headers["Strict-Transport-Security"] == "max-age=63072000"
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # the service's own headers pass


def test_a_signed_hook_call_through_the_proxy_gets_cards_linking_to_the_https_url(proxied: Proxied) -> None:
    body = as_of_today("opioid-active-methadone-statement")
    with proxied.client() as client:
        response = client.post(SELECT, json=body, headers=proxied.auth(SELECT))
    assert response.status_code == 200, f"{response.status_code} {response.text}\n{proxied.server.logs()}"
    cards = response.json()["cards"]
    assert "opioid-active" in [card["source"]["topic"]["code"] for card in cards]
    links = [link["url"] for card in cards for link in card.get("links", [])]
    assert links and all(url.startswith(f"{proxied.public_url}/rules/") for url in links), links


def test_only_the_forwarded_scheme_makes_an_https_audience_valid(proxied: Proxied) -> None:
    """Straight to gunicorn, no proxy: the connection's scheme is http. With an audience built from the
    request that token is refused, which is what makes the call through nginx evidence that its
    X-Forwarded-Proto arrived; a fixed public URL accepts it either way."""
    body = as_of_today("opioid-active-methadone-statement")
    host = {"Host": f"localhost:{proxied.https_port}"}
    with proxied.server.client() as direct:
        response = direct.post(SELECT, json=body, headers={**host, **proxied.auth(SELECT)})
    assert response.status_code == (401 if proxied.mode == "allowed-hosts" else 200), response.text


def test_a_body_over_the_limit_is_refused_by_the_proxy_before_the_service(proxied: Proxied) -> None:
    too_large = b"{" + b" " * (max_body_bytes() - 1) + b"}"
    assert len(too_large) == max_body_bytes() + 1
    with proxied.client() as client:
        response = client.post(
            SELECT, content=too_large, headers={"Content-Type": "application/json", **proxied.auth(SELECT)}
        )
    assert response.status_code == 413, response.text[:500]
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "too-costly"
    assert str(max_body_bytes()) in outcome["issue"][0]["diagnostics"]
    statuses = [_status(line) for line in proxied.server.logs().splitlines()]
    assert 413 not in statuses, "the service saw the body: nginx's client_max_body_size is above its limit"


def _status(line: str) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    status = record.get("status") if isinstance(record, dict) else None
    return status if isinstance(status, int) else None


def test_plain_http_is_only_redirected_to_https(proxied: Proxied) -> None:
    with httpx.Client(
        base_url=f"http://127.0.0.1:{proxied.http_port}", headers={"Host": "localhost"}, timeout=10.0
    ) as plain:
        for method in ("GET", "POST"):
            response = plain.request(method, SELECT, json={} if method == "POST" else None)
            assert response.status_code == 301, (method, response.status_code, response.text)
            assert response.headers["Location"] == f"https://localhost{SELECT}"
            assert "OperationOutcome" not in response.text  # nginx answered; the service was not asked


def test_metrics_are_not_served_through_the_proxy(proxied: Proxied) -> None:
    with proxied.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")  # nginx's page, not the service's JSON
