"""Certificates for the embedded broker's TLS listener, from a CA that lives only in memory (trustme).

The CA's key is never written: the CA certificate (what clients trust), the broker's key and certificate
(a PEM keystore: Kafka reads ssl.keystore.type=PEM, a PKCS#8 key followed by the chain) and a client
certificate for mutual TLS, whose key is encrypted with a password, are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsFiles", "make_tls_files"]

# The names clients use for the embedded broker; the certificate carries both, so hostname checks pass.
_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate: YUQING_KAFKA_SSL_CA_FILE
    keystore: Path  # the broker's PKCS#8 key and certificate chain
    client_cert: Path
    client_key: Path  # PKCS#8, encrypted with the key password

    @classmethod
    def at(cls, directory: Path) -> TlsFiles:
        return cls(
            ca=directory / "ca.pem",
            keystore=directory / "server.pem",
            client_cert=directory / "client.pem",
            client_key=directory / "client.key",
        )


def make_tls_files(directory: Path, key_password: str) -> TlsFiles:
    """A fresh CA, a broker certificate for 127.0.0.1 and localhost, and a client certificate, in
    `directory`; private keys are readable by their owner only."""
    import trustme
    from cryptography.hazmat.primitives import serialization

    files = TlsFiles.at(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="yuqing embedded Kafka")
    server = ca.issue_cert(*_HOSTS)
    client = ca.issue_cert("yuqing-client", common_name="yuqing-client")

    def pkcs8(pem: bytes, password: bytes | None) -> bytes:
        # trustme writes "EC PRIVATE KEY" (SEC1); Kafka's PEM keystore reads PKCS#8 only.
        key = serialization.load_pem_private_key(pem, None)
        encryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    _write(files.ca, ca.cert_pem.bytes(), 0o644)
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    _write(files.keystore, pkcs8(server.private_key_pem.bytes(), None) + chain, 0o600)
    _write(files.client_cert, b"".join(blob.bytes() for blob in client.cert_chain_pems), 0o644)
    _write(files.client_key, pkcs8(client.private_key_pem.bytes(), key_password.encode()), 0o600)
    return files


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
