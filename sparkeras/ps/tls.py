"""Optional TLS for parameter-server connections.

Neutral module: the same `TLSConfig` travels from the driver (server side)
to the executors (client side) inside the task closure, so it holds only
file paths and names.
"""

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass

__all__ = ["TLSConfig"]


@dataclass(frozen=True)
class TLSConfig:
    """Certificate files for an encrypted, server-authenticated connection.

    The server presents `certfile`/`keyfile`; clients verify it against
    `cafile` (the system's CA store when None) and `server_hostname` (the
    host they connect to when None). Clients read only `cafile`, so only that
    file must exist on the executors, at the same path.

    Attributes:
        certfile: PEM certificate chain of the server.
        keyfile: PEM private key of the server.
        cafile: PEM file of the CA (or the self-signed certificate) clients trust.
        server_hostname: Name the server's certificate must carry.

    Example:
    >>> tls = TLSConfig("/etc/sparkeras/ps.pem", "/etc/sparkeras/ps.key",
    ...                 cafile="/etc/sparkeras/ca.pem")
    >>> ParameterServer(handler, host="10.0.0.5", secret=secret, tls=tls)
    """

    certfile: str
    keyfile: str
    cafile: str | None = None
    server_hostname: str | None = None

    def server_context(self):
        """An `ssl.SSLContext` for the server side (TLS 1.2 or later).

        Example:
        >>> context = tls.server_context()
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # No session tickets: the server never sends anything unasked, which
        # lets a client tell a connection the server closed from a live one.
        context.num_tickets = 0
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(
                "Cannot load the parameter server's TLS certificate and key; check that both "
                "files exist, are PEM and match each other. "
                f"Received: certfile={self.certfile!r}, keyfile={self.keyfile!r} ({error})."
            ) from None
        return context

    def client_context(self):
        """An `ssl.SSLContext` that verifies the server's certificate.

        Example:
        >>> context = tls.client_context()
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cafile is None:
            context.load_default_certs()
            return context
        try:
            context.load_verify_locations(cafile=self.cafile)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(
                "Cannot load the CA file that verifies the parameter server; it must exist at "
                f"the same path on every executor. Received: cafile={self.cafile!r} ({error})."
            ) from None
        return context

    @classmethod
    def self_signed(cls, directory, hostname="127.0.0.1", days=30):
        """Writes a new self-signed certificate and key; returns their config.

        Handy for one fit or for tests: the certificate is its own CA
        (`cafile` is the certificate). Needs the `cryptography` package.

        Args:
            directory: Existing folder for `ps-cert.pem` and `ps-key.pem`.
            hostname: IP address or DNS name the certificate is valid for.
            days: Validity in days.

        Example:
        >>> tls = TLSConfig.self_signed(tempfile.mkdtemp(), hostname="127.0.0.1")
        """
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError:
            raise ImportError(
                "TLSConfig.self_signed needs the cryptography package: pip install cryptography"
            ) from None
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            alt_name = x509.IPAddress(ipaddress.ip_address(hostname))
        except ValueError:
            alt_name = x509.DNSName(hostname)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([alt_name]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False
            )
            .sign(key, hashes.SHA256())
        )
        certfile = os.path.join(directory, "ps-cert.pem")
        keyfile = os.path.join(directory, "ps-key.pem")
        with open(certfile, "wb") as out:
            out.write(cert.public_bytes(serialization.Encoding.PEM))
        descriptor = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return cls(certfile, keyfile, cafile=certfile, server_hostname=None)
