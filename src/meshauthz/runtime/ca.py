"""The mesh's certificate authority, as istiod's built-in CA (Citadel) runs it.

A self-signed root (ECDSA P-256, ten years, like istiod's self-signed root)
and, per service account, a short-lived workload certificate whose only
identity is the SPIFFE URI SAN ``spiffe://<trust-domain>/ns/<ns>/sa/<sa>``
(``pkg/spiffe``), usable for both TLS client and server authentication, as
the certificates istio-agent gets over its CSR flow. Istio's default
lifetime is 24 hours with rotation at half-life; the mesh default is one
hour, rotated at half-life too (``needs_rotation``).

Private keys are written with mode 0600 in directories of mode 0700.
"""

from __future__ import annotations

import datetime
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from msgspec import Struct

ROOT_LIFETIME = datetime.timedelta(days=3650)
DEFAULT_WORKLOAD_TTL = datetime.timedelta(hours=1)
# Backdate certificates a little so a clock a few seconds behind still accepts them
# (istiod's CA backdates by a minute for the same reason).
_BACKDATE = datetime.timedelta(seconds=60)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class WorkloadCert(Struct, frozen=True):
    spiffe_id: str
    cert_pem: bytes
    key_pem: bytes
    not_before: datetime.datetime
    not_after: datetime.datetime

    def needs_rotation(self, now: datetime.datetime | None = None) -> bool:
        """Rotate at half of the lifetime (istio-agent's default grace ratio 0.5)."""
        now = now or _now()
        return now >= self.not_before + (self.not_after - self.not_before) / 2

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> WorkloadCert:
        cert = x509.load_pem_x509_certificate(cert_pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        return cls(
            uris[0] if uris else "",
            cert_pem,
            key_pem,
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
        )


class CertificateAuthority:
    """A root key and certificate kept in ``directory`` (created 0700)."""

    def __init__(self, directory: Path, trust_domain: str = "cluster.local") -> None:
        self.directory = Path(directory)
        self.trust_domain = trust_domain
        self.root_cert_path = self.directory / "root-cert.pem"
        self.root_key_path = self.directory / "root-key.pem"
        if self.root_cert_path.exists() and self.root_key_path.exists():
            self.root_cert = x509.load_pem_x509_certificate(self.root_cert_path.read_bytes())
            key = serialization.load_pem_private_key(self.root_key_path.read_bytes(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self.root_key = key
        else:
            self._create_root()

    def _create_root(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain),
                x509.NameAttribute(NameOID.COMMON_NAME, "meshauthz mesh root CA"),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + ROOT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_private(self.root_key_path, _key_pem(key))
        self.root_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.root_cert, self.root_key = cert, key

    @property
    def root_pem(self) -> bytes:
        return self.root_cert.public_bytes(serialization.Encoding.PEM)

    def spiffe_id(self, namespace: str, service_account: str) -> str:
        return f"spiffe://{self.trust_domain}/ns/{namespace}/sa/{service_account}"

    def issue(
        self,
        namespace: str,
        service_account: str,
        ttl: datetime.timedelta = DEFAULT_WORKLOAD_TTL,
    ) -> WorkloadCert:
        """A fresh key pair and certificate for the service account."""
        return self.issue_for(self.spiffe_id(namespace, service_account), ttl)

    def issue_for(
        self, spiffe_id: str, ttl: datetime.timedelta = DEFAULT_WORKLOAD_TTL
    ) -> WorkloadCert:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_before, not_after = now - _BACKDATE, now + ttl
        cert = (
            x509.CertificateBuilder()
            # Istio's workload certificates have an empty subject; the identity is the SAN.
            .subject_name(x509.Name([]))
            .issuer_name(self.root_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                critical=True,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                critical=False,
            )
            .sign(self.root_key, hashes.SHA256())
        )
        return WorkloadCert(
            spiffe_id,
            cert.public_bytes(serialization.Encoding.PEM),
            _key_pem(key),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
        )


__all__ = [
    "DEFAULT_WORKLOAD_TTL",
    "CertificateAuthority",
    "WorkloadCert",
    "write_private",
]
