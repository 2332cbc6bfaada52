"""Secure channel, identity and server trust for the OPC UA client."""

from __future__ import annotations

import hashlib
import logging
import socket
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import cert_gen
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.opcua.spec import Endpoint

log = logging.getLogger(__name__)

MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


class UntrustedServer(Exception):
    """The server's certificate is not in the trust directory."""


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, as colon-separated hex."""
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 16, 2)) + "..."


def _trusted(trust_dir: Path) -> set[bytes]:
    ders: set[bytes] = set()
    for path in sorted(trust_dir.glob("*")) if trust_dir.is_dir() else []:
        data = path.read_bytes()
        try:
            pem = b"-----BEGIN" in data
            cert = x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
        except ValueError:
            log.warning("trust directory: %s is not a certificate; ignored", path)
            continue
        ders.add(cert.public_bytes(Encoding.DER))
    return ders


def trust_checker(ep: Endpoint):  # type: ignore[no-untyped-def]
    """The certificate validator asyncua calls with the server's certificate at session creation."""

    async def check(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        der = cert.public_bytes(Encoding.DER)
        trust_dir = ep.trust_dir
        if trust_dir is not None and der in _trusted(trust_dir):
            return
        name = f"{(app.ApplicationName.Text or 'server').replace(' ', '_').replace('/', '_')}.der"
        if trust_dir is not None and ep.trust_on_first_use:
            trust_dir.mkdir(parents=True, exist_ok=True)
            (trust_dir / name).write_bytes(der)
            log.warning("trusting %s on first use (%s) -> %s", ep.url, fingerprint(cert), trust_dir / name)
            return
        rejected = (trust_dir or Path(".")).parent / "rejected" if trust_dir else None
        where = ""
        if rejected is not None:
            rejected.mkdir(parents=True, exist_ok=True)
            (rejected / name).write_bytes(der)
            where = f"; to trust it, move {rejected / name} into {trust_dir}/"
        raise UntrustedServer(f"server certificate of {ep.url} ({cert.subject.rfc4514_string()}, SHA-256 "
                              f"{fingerprint(cert)}) is not trusted{where}")

    return check


async def configure_security(client: Client, ep: Endpoint) -> None:
    """Apply policy, mode, identity and the trust check before ``connect()``."""
    if ep.identity == "username":
        client.set_user(ep.username or "")
        client.set_password(ep.password or "")
    elif ep.identity == "certificate" and ep.certificate and ep.private_key:
        await client.load_client_certificate(str(ep.certificate))
        await client.load_private_key(ep.private_key)
    if ep.policy == "Basic256Sha256":
        assert ep.certificate is not None and ep.private_key is not None
        await client.set_security(SecurityPolicyBasic256Sha256, str(ep.certificate), str(ep.private_key),
                                  mode=MODES[ep.security_mode])
        client.certificate_validator = trust_checker(ep)


def make_certificate(directory: Path, application_uri: str, name: str = "HackSky Edge",
                     hostname: str | None = None, server: bool = False) -> tuple[Path, Path]:
    """A self-signed application certificate (DER) and key (PEM) carrying ``application_uri``."""
    directory.mkdir(parents=True, exist_ok=True)
    host = hostname or socket.gethostname()
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host),
                        x509.DNSName("localhost")],
        [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH], days=3650)
    cert_path, key_path = directory / "cert.der", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path
