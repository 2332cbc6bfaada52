"""Secure channel, identity and server trust for the OPC UA client."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
from pathlib import Path
from urllib.parse import quote

from asyncua import Client, ua
from asyncua.crypto import cert_gen
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.crypto.uacrypto import CertProperties
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.base import write_new
from drivers.opcua.spec import Endpoint
from drivers.opcua.text import log_safe

log = logging.getLogger(__name__)

MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


class UntrustedServer(Exception):
    """The server's certificate is not in the trust directory, or not the one pinned for its endpoint."""


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate as colon-separated hex, as ``openssl x509 -fingerprint -sha256`` prints it."""
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _file_name(fp: str) -> str:
    """Certificate files are named by fingerprint: two certificates never share a file."""
    return fp.replace(":", "").lower() + ".der"


def _load(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)


def _keep(path: Path, data: bytes) -> None:
    """Save a certificate once; a file already there (same fingerprint, same content) is left as it is."""
    try:
        write_new(path, data)
    except FileExistsError:
        pass


def _trusted(trust_dir: Path) -> set[bytes]:
    ders: set[bytes] = set()
    for path in sorted(trust_dir.glob("*")) if trust_dir.is_dir() else []:
        if not path.is_file():
            continue
        try:
            ders.add(_load(path.read_bytes()).public_bytes(Encoding.DER))
        except ValueError:
            log.warning("trust directory: %s is not a certificate; ignored", path)
    return ders


def pin_file(ep: Endpoint) -> Path:
    """Where the fingerprint pinned on first use for ``ep.url`` is kept: ``<trust_dir>/../pinned/<url>``."""
    assert ep.trust_dir is not None
    return ep.trust_dir.parent / "pinned" / quote(ep.url, safe="")


def _pin(ep: Endpoint, fp: str) -> tuple[str, bool]:
    """The endpoint's pinned fingerprint, and whether it is new: the one already pinned, else ``fp``.

    Created with O_EXCL, so of two sessions racing to the same endpoint only one pins.
    """
    path = pin_file(ep)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_new(path, f"{fp}\n{ep.url}\n".encode())
    except FileExistsError:
        return path.read_text(encoding="utf-8").split("\n", 1)[0].strip(), False
    return fp, True


def trust_checker(ep: Endpoint):  # type: ignore[no-untyped-def]
    """The certificate validator asyncua calls with the server's certificate at session creation.

    With ``trust_on_first_use`` the first certificate an endpoint presents is pinned to that
    endpoint URL and any other is refused afterwards (whatever ApplicationName it claims);
    without it, the certificate must be in ``trust_dir``.
    """

    async def check(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        der, fp = cert.public_bytes(Encoding.DER), fingerprint(cert)
        trust_dir = ep.trust_dir
        subject = log_safe(cert.subject.rfc4514_string())
        if trust_dir is not None and ep.trust_on_first_use:
            trust_dir.mkdir(parents=True, exist_ok=True)
            pinned, new = _pin(ep, fp)
            if pinned == fp:
                if new:
                    if der not in _trusted(trust_dir):
                        _keep(trust_dir / _file_name(fp), der)
                    log.warning("trusting %s on first use: SHA-256 %s (%s, application %s) pinned in %s", ep.url, fp,
                                subject, log_safe(app.ApplicationName.Text), pin_file(ep))
                return
            saved = _reject(trust_dir, der, fp)
            raise UntrustedServer(
                f"server certificate of {ep.url} is not the one pinned on first use: pinned SHA-256 {pinned}, "
                f"presented SHA-256 {fp} ({subject}); refused, kept as {saved}. If the server's certificate was "
                f"replaced on purpose, delete {pin_file(ep)} to pin the next one seen")
        if trust_dir is not None and der in _trusted(trust_dir):
            return
        where = ""
        if trust_dir is not None:
            saved = _reject(trust_dir, der, fp)
            where = f"; to trust it, move {saved} into {trust_dir}/"
        raise UntrustedServer(f"server certificate of {ep.url} ({subject}, SHA-256 {fp}) is not trusted{where}")

    return check


def _reject(trust_dir: Path, der: bytes, fp: str) -> Path:
    """Keep a refused certificate beside the trust directory for the operator to inspect."""
    rejected = trust_dir.parent / "rejected"
    rejected.mkdir(parents=True, exist_ok=True)
    _keep(rejected / _file_name(fp), der)
    return rejected / _file_name(fp)


def certificate_uri(path: Path) -> str | None:
    """The application URI a certificate carries (first URI of its subjectAltName), if any."""
    try:
        san = _load(path.read_bytes()).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def application_uri(ep: Endpoint) -> str:
    """The URI the session presents: the certificate's own when one is supplied (a server checks
    they match, BadCertificateUriInvalid), else the gateway's default."""
    return (certificate_uri(ep.certificate) if ep.certificate is not None else None) or ep.application_uri


def refusal_hint(exc: BaseException, ep: Endpoint, uri: str) -> str:
    """What a BadCertificateUriInvalid refusal means here: which URI was presented, and from where."""
    if not (isinstance(exc, ua.UaStatusCodeError) and exc.code == ua.StatusCodes.BadCertificateUriInvalid):
        return ""
    if ep.certificate is None:
        return f"; the server refused the application URI {uri}"
    if certificate_uri(ep.certificate) is None:
        return (f"; the server refused the application URI {uri}: the certificate {ep.certificate} carries none "
                "(no URI in its subjectAltName), and the server wants the two to match")
    return f"; the server refused the application URI {uri} of the certificate {ep.certificate}"


def _format(path: Path) -> str:
    """``pem`` or ``der`` by content: asyncua goes by suffix, and a PKI's ``.crt``/``.key`` files are PEM."""
    return "pem" if b"-----BEGIN" in path.read_bytes() else "der"


async def configure_security(client: Client, ep: Endpoint) -> None:
    """Apply application URI, policy, mode, identity and the trust check before ``connect()``."""
    client.application_uri = application_uri(ep)
    if ep.identity == "username":
        client.set_user(ep.username or "")
        client.set_password(ep.password or "")
    elif ep.identity == "certificate" and ep.certificate and ep.private_key:
        await client.load_client_certificate(str(ep.certificate), _format(ep.certificate))
        await client.load_private_key(ep.private_key, extension=_format(ep.private_key))
    if ep.policy == "Basic256Sha256":
        assert ep.certificate is not None and ep.private_key is not None
        await client.set_security(SecurityPolicyBasic256Sha256,
                                  CertProperties(ep.certificate, _format(ep.certificate)),
                                  CertProperties(ep.private_key, _format(ep.private_key)),
                                  mode=MODES[ep.security_mode])
        client.certificate_validator = trust_checker(ep)


def make_certificate(directory: Path, application_uri: str, name: str = "HackSky Edge",
                     hostname: str | None = None, server: bool = False, force: bool = False) -> tuple[Path, Path]:
    """A self-signed application certificate (DER) and key (PEM, mode 0600 from creation) carrying ``application_uri``.

    Refuses (FileExistsError) when ``cert.der`` or ``key.pem`` exists, or is a link; ``force`` replaces
    them by renaming new files over them, so a planted symlink is replaced, never written through.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.der", directory / "key.pem"
    present = [f"{p} (a symbolic link)" if p.is_symlink() else str(p) for p in (cert_path, key_path)
               if p.is_symlink() or p.exists()]
    if present and not force:
        raise FileExistsError(f"{' and '.join(present)} already there; not overwritten")
    host = hostname or socket.gethostname()
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host),
                        x509.DNSName("localhost")],
        [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH], days=3650)
    for path, data, mode in ((key_path, cert_gen.dump_private_key_as_pem(key), 0o600),
                             (cert_path, cert.public_bytes(Encoding.DER), 0o644)):
        if force:
            fresh = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
            write_new(fresh, data, mode)
            os.replace(fresh, path)  # rename replaces a symlink itself, not its target
        else:
            write_new(path, data, mode)
    return cert_path, key_path
