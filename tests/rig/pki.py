"""A throwaway PKI for tests: a CA, a TLS server certificate for 127.0.0.1, a client certificate, and token
signing certificates, made with ``cryptography`` and written to PEM files.

The registry under test is Go (distribution 2.8), whose crypto/x509 is strict where OpenSSL is lenient: a
server certificate must carry the address in a subjectAltName (the CN is ignored since Go 1.15), a client
certificate checked against ``http.tls.clientcas`` must allow ``clientAuth``, and the CA must be a real CA
(basicConstraints CA:TRUE, keyCertSign). Everything here follows those rules so a failure in a test is about
the code under test, never about the certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Issued:
    """A certificate and its private key, in memory and as PEM files."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    cert_path: Path
    key_path: Path

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


@dataclass
class PKI:
    """What a TLS test needs: ``ca.cert_path`` is the bundle to trust (``-v`` / ``clientcas``)."""

    ca: Issued
    server: Issued
    client: Issued


def _new_key(kind: str):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {kind!r} (ec or rsa)")


def _write(directory: Path, stem: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    # Backdated an hour: a clock a little behind on the verifying side must not make a fresh cert "not yet valid".
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=2)
    )


def make_ca(directory: Path, name: str = "regdb test CA", *, key_type: str = "ec") -> Issued:
    """A self-signed root CA, written to ``<directory>/ca.crt`` and ``ca.key``."""
    key = _new_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        _validity(x509.CertificateBuilder())
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = _write(Path(directory), "ca", cert, key)
    return Issued(cert, key, cert_path, key_path)


def issue(
    ca: Issued,
    directory: Path,
    stem: str,
    *,
    common_name: str,
    ips: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    usages: tuple = (),
    key_type: str = "ec",
) -> Issued:
    """A leaf certificate signed by ``ca``; ``usages`` are ExtendedKeyUsageOID values (none: no EKU extension)."""
    key = _new_key(key_type)
    builder = (
        _validity(x509.CertificateBuilder())
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=key_type == "rsa",
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    names += [x509.DNSName(name) for name in dns]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    cert_path, key_path = _write(Path(directory), stem, cert, key)
    return Issued(cert, key, cert_path, key_path)


def make_server_cert(ca: Issued, directory: Path, *, ips=("127.0.0.1",), dns=("localhost",)) -> Issued:
    """A TLS server certificate with IP and DNS subjectAltNames (Go ignores the CN)."""
    return issue(ca, directory, "server", common_name=ips[0] if ips else dns[0], ips=tuple(ips), dns=tuple(dns),
                 usages=(ExtendedKeyUsageOID.SERVER_AUTH,))


def make_client_cert(ca: Issued, directory: Path, *, name: str = "regdb-client") -> Issued:
    """A TLS client certificate (clientAuth), for a registry with ``http.tls.clientcas``."""
    return issue(ca, directory, "client", common_name=name, usages=(ExtendedKeyUsageOID.CLIENT_AUTH,))


def make_signing_cert(ca: Issued, directory: Path, *, key_type: str = "ec", stem: str = "token-signing") -> Issued:
    """A token-signing certificate (no EKU: distribution 2.8 verifies the x5c chain with ExtKeyUsageAny)."""
    return issue(ca, directory, stem, common_name="regdb test token issuer", key_type=key_type)


def make_pki(directory: Path) -> PKI:
    """CA, server certificate for 127.0.0.1/localhost and a client certificate, all under ``directory``."""
    directory = Path(directory)
    ca = make_ca(directory)
    return PKI(ca=ca, server=make_server_cert(ca, directory), client=make_client_cert(ca, directory))
