"""What TLS costs in CPU on this machine, without the network: handshakes and bulk bytes, both sides in memory.

Run: ``python tests/node/measure_tls.py`` (docs/performance.md, "TLS"). CPU time of this thread, so the
figures hold on a shared machine better than wall time; the certificates are the devnet's (ECDSA P-256, TLS 1.3).
"""

from __future__ import annotations

import json
import ssl
import sys
import tempfile
import time
from pathlib import Path

from rantai.client.devcerts import CertificateAuthority


def contexts(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = CertificateAuthority(folder)
    node = ca.issue(folder, "v0")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(node.cert, node.key)
    server.load_verify_locations(ca.cert_path)
    server.verify_mode = ssl.CERT_OPTIONAL  # as a node with require_client_cert
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(ca.cert_path)
    client.load_cert_chain(node.cert, node.key)  # mTLS, as a peer link
    return server, client


def pair(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.SSLObject, list]:
    bios = [ssl.MemoryBIO() for _ in range(4)]  # c->s, s->c
    c = client.wrap_bio(bios[1], bios[0], server_hostname="127.0.0.1")
    s = server.wrap_bio(bios[0], bios[1], server_side=True)
    done = [False, False]
    while not all(done):
        for k, obj in enumerate((c, s)):
            if not done[k]:
                try:
                    obj.do_handshake()
                    done[k] = True
                except ssl.SSLWantReadError:
                    pass
    return c, s, bios


def main(handshakes: int = 200, megabytes: int = 64) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        server, client = contexts(Path(tmp))
        t0 = time.thread_time()
        for _ in range(handshakes):
            pair(server, client)
        per_handshake = (time.thread_time() - t0) / handshakes
        c, s, bios = pair(server, client)
        chunk = b"x" * 65536
        t0 = time.thread_time()
        received = 0
        for _ in range(megabytes * 16):
            c.write(chunk)
            while True:
                try:
                    received += len(s.read(1 << 20))
                except ssl.SSLWantReadError:
                    break
        assert received == megabytes * 16 * len(chunk)
        per_mb = (time.thread_time() - t0) / megabytes
    return {"cpu_ms_per_mtls_handshake_both_sides": round(per_handshake * 1000, 2),
            "cpu_ms_per_mb_encrypt_and_decrypt": round(per_mb * 1000, 2),
            "cipher": c.cipher()[0], "version": c.version(), "python": sys.version.split()[0],
            "openssl": ssl.OPENSSL_VERSION}


if __name__ == "__main__":
    print(json.dumps(main()))
