"""A certificate authority made for one test with openssl: its certificate file, and
certificates it signs for domain names (SAN dNSName, usable as TLS server and client
certificates, as XEP-0178 peers present them)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class TestCA:
    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="test-ca-"))
        self.cert = self.dir / "ca.crt"
        self.key = self.dir / "ca.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", str(self.key), "-out", str(self.cert),
                 "-subj", "/CN=Heliograph interop test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, directory: Path | None = None) -> tuple[Path, Path]:
        """(certificate, key) files for ``name``, in ``directory`` (default: the CA's)."""
        out = directory or self.dir
        crt, key, csr = out / f"{name}.crt", out / f"{name}.key", out / f"{name}.csr"
        ext = out / f"{name}.ext"
        ext.write_text(f"subjectAltName=DNS:{name}\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n"
                       "basicConstraints=CA:FALSE\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                 "-out", str(csr), "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert),
                 "-CAkey", str(self.key), "-CAcreateserial", "-days", "2",
                 "-out", str(crt), "-extfile", str(ext))
        return crt, key
