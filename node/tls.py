"""TLS for a validator: its API and peer streams over HTTPS, certificates replaced without a restart.

Why contexts are swapped rather than rebuilt servers: the listening socket (uvicorn) and the peer
clients (httpx) each hold one ``ssl.SSLContext`` for their whole life, and both call its
``wrap_bio`` once per new connection. ``Reloadable`` is that context, delegating each
``wrap_bio`` to whichever context was built last from the files, so a renewed certificate, key or
CA is used by every new connection from the moment it loads, while open connections keep theirs.
A reload is triggered by SIGHUP or by the files changing (polled); a set of files that does not
load (a key that does not match its certificate, half-written files) is refused with one log line
and the current certificate stays in use.

Peer endpoints (``/v1/peer/...``) can require a client certificate (mTLS, ``require_client_cert``)
in addition to the signed consensus messages: the server asks every client for a certificate but
only the peer endpoints insist, so members' clients need none. Pins (``pinned_peers``) restrict
peers further to the listed certificates, on both directions of a peer link.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rantai.client.format.errors import ConfigError
from rantai.client.format.pins import fingerprint, parse_pins, pin_problem

__all__ = ["NodeTls", "Reloadable", "TlsConfig", "is_loopback", "plain_http_warning"]

log = logging.getLogger("rantai.node.tls")
PEER_PATHS = "/v1/peer/"
EXPIRY_WARNING_DAYS = 30
# Refusals, by rule (counted and shown in ``status``): a client whose certificate failed the
# handshake, any other failed handshake, a peer endpoint called without an acceptable client
# certificate, and a peer whose server certificate this node refused when connecting to it.
RULES = ("tls.client_certificate", "tls.handshake", "peer.client_certificate", "tls.peer_certificate")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plain_http_warning(host: str, port: int) -> str | None:
    """The loud line a node on a non-loopback address without TLS logs and shows in ``status``."""
    if is_loopback(host):
        return None
    return (f"INSECURE: listening on {host}:{port} without TLS: records, votes and reads cross the network "
            f"in clear and unauthenticated; add a [tls] table to the config (docs/operations.md, \"TLS\")")


@dataclass(frozen=True)
class TlsConfig:
    """The ``[tls]`` table of a node's config (paths relative to the config file)."""

    cert: Path
    key: Path
    ca: Path | None = None
    pinned_peers: frozenset[str] = frozenset()
    require_client_cert: bool = False
    watch_s: float = 5.0

    @classmethod
    def from_obj(cls, doc: Any, base: Path = Path(".")) -> "TlsConfig | None":
        if doc is None:
            return None
        if not isinstance(doc, dict):
            raise ConfigError("config: [tls] must be a table")
        unknown = set(doc) - {"cert", "key", "ca", "pinned_peers", "require_client_cert", "watch_s"}
        if unknown:
            raise ConfigError(f"config: [tls] has unknown keys {sorted(unknown)}")
        for k in ("cert", "key"):
            if not isinstance(doc.get(k), str):
                raise ConfigError(f"config: tls.{k} (a PEM file) is required in [tls]")
        ca = doc.get("ca")
        if ca is not None and not isinstance(ca, str):
            raise ConfigError("config: tls.ca must be the path of a PEM file of CA certificates")
        pins = doc.get("pinned_peers", [])
        if not isinstance(pins, list):
            raise ConfigError("config: tls.pinned_peers must be a list of SHA-256 fingerprints")
        require = doc.get("require_client_cert", False)
        if not isinstance(require, bool):
            raise ConfigError("config: tls.require_client_cert must be true or false")
        if require and ca is None:
            raise ConfigError("config: tls.require_client_cert needs tls.ca (the CA of the peers' certificates)")
        watch_s = doc.get("watch_s", 5.0)
        if isinstance(watch_s, bool) or not isinstance(watch_s, (int, float)) or not 0 <= watch_s <= 3600:
            raise ConfigError("config: tls.watch_s must be 0..3600 seconds (0: reload on SIGHUP only)")
        return cls(cert=base / doc["cert"], key=base / doc["key"], ca=None if ca is None else base / ca,
                   pinned_peers=parse_pins(pins), require_client_cert=require, watch_s=float(watch_s))

    def to_obj(self, rel: Callable[[Path], str]) -> dict[str, Any]:
        doc: dict[str, Any] = {"cert": rel(self.cert), "key": rel(self.key)}
        if self.ca is not None:
            doc["ca"] = rel(self.ca)
        if self.pinned_peers:
            doc["pinned_peers"] = sorted(self.pinned_peers)
        doc["require_client_cert"] = self.require_client_cert
        doc["watch_s"] = self.watch_s
        return doc

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.cert, self.key) + (() if self.ca is None else (self.ca,))


class Reloadable(ssl.SSLContext):
    """An ``SSLContext`` whose new connections use ``current``: replacing it rotates certificates in place."""

    current: ssl.SSLContext

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        return self.current.wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self.current.wrap_socket(*args, **kwargs)


def _checked_sslobject(on_failure: Callable[[BaseException], None],
                       check: Callable[[ssl.SSLObject], str | None]) -> type[ssl.SSLObject]:
    """An ``SSLObject`` that reports failed handshakes and applies ``check`` (the pins) once one completes."""

    class Checked(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as exc:
                on_failure(exc)
                raise
            problem = check(self)
            if problem is not None:
                refused = ssl.SSLCertVerificationError(1, f"certificate pin: {problem}")
                on_failure(refused)
                raise refused

    return Checked


@dataclass
class _Loaded:
    fingerprint: str
    subject: str
    not_after: dt.datetime
    loaded_at: float
    signature: tuple


def _signature(paths: tuple[Path, ...]) -> tuple:
    """What tells a changed file from an unchanged one (its inode too: certificates are replaced by rename)."""
    out: list[tuple[int, int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class NodeTls:
    """One node's TLS state: the server and peer-client contexts, reloads, refusal counters, the mTLS guard."""

    def __init__(self, cfg: TlsConfig) -> None:
        self.cfg = cfg
        self.server = Reloadable(ssl.PROTOCOL_TLS_SERVER)
        self.client = Reloadable(ssl.PROTOCOL_TLS_CLIENT)
        self.refused: Counter[str] = Counter()
        self.reloads = 0
        self.last_error = ""
        self.loaded: _Loaded | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_log: dict[str, float] = {}
        # client (host, port) of each open TLS connection -> (its verified certificate (DER) or None, its
        # transport), filled by the server protocol (``protocol_class``) and read by the peer-endpoint guard.
        self.connections: MutableMapping[tuple[str, int], tuple[bytes | None, Any]] = {}
        if not self.reload(initial=True):
            raise ConfigError(f"tls: {self.last_error}")

    # -- building contexts -------------------------------------------------------------------------
    def _build(self) -> tuple[ssl.SSLContext, ssl.SSLContext, _Loaded]:
        cfg = self.cfg
        signature = _signature(cfg.files)
        pem = cfg.cert.read_bytes()
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = ssl.TLSVersion.TLSv1_2
        server.load_cert_chain(cfg.cert, cfg.key)
        if cfg.ca is not None:
            server.load_verify_locations(cfg.ca)
            # Asked of everyone, required only on the peer endpoints (``guard``).
            server.verify_mode = ssl.CERT_OPTIONAL if cfg.require_client_cert else ssl.CERT_NONE
        server.set_alpn_protocols(["http/1.1"])
        server.sslobject_class = _checked_sslobject(self._server_failure, lambda obj: None)

        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.minimum_version = ssl.TLSVersion.TLSv1_2
        if cfg.ca is not None:
            client.load_verify_locations(cfg.ca)
        elif cfg.pinned_peers:  # pins alone (self-signed peers): the pin is the verification
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE
        else:
            client.load_default_certs()
        client.load_cert_chain(cfg.cert, cfg.key)  # this node's identity when a peer asks (mTLS)
        client.set_alpn_protocols(["http/1.1"])
        pins = cfg.pinned_peers
        client.sslobject_class = _checked_sslobject(
            self._client_failure, lambda obj: pin_problem(obj.getpeercert(binary_form=True), pins))

        from cryptography import x509

        cert = x509.load_pem_x509_certificate(pem)
        der = cert.public_bytes(_der())
        info = _Loaded(fingerprint(der), cert.subject.rfc4514_string(), cert.not_valid_after_utc, time.time(),
                       signature)
        return server, client, info

    def reload(self, initial: bool = False) -> bool:
        """Load the files again: new connections use them; False (the old ones stay) if they do not load."""
        with self._lock:
            try:
                server, client, info = self._build()
            except (OSError, ssl.SSLError, ValueError) as exc:
                self.last_error = (f"cannot load the certificate {self.cfg.cert} / key {self.cfg.key}"
                                   f"{'' if self.cfg.ca is None else f' / CA {self.cfg.ca}'}: "
                                   f"{getattr(exc, 'strerror', None) or exc}")
                if self.loaded is not None:
                    self.loaded.signature = _signature(self.cfg.files)  # retried when they change again
                    log.error("tls: keeping the current certificate (sha256 %s): %s",
                              self.loaded.fingerprint, self.last_error)
                return False
            self.server.current, self.client.current = server, client
            previous, self.loaded = self.loaded, info
            self.last_error = ""
            if not initial:
                self.reloads += 1
        days = (info.not_after - dt.datetime.now(dt.timezone.utc)).days
        what = "loaded" if previous is None else f"reloaded (was sha256 {previous.fingerprint})"
        log.info("tls: certificate %s %s, sha256 %s, expires %s (%d days); new connections use it",
                 info.subject, what, info.fingerprint, info.not_after.isoformat(), days)
        if days < EXPIRY_WARNING_DAYS:
            log.warning("tls: the certificate expires in %d days (%s): replace the files, then SIGHUP or wait "
                        "for the reload (docs/operations.md, \"Replacing a certificate\")", days, info.not_after)
        return True

    # -- watching ----------------------------------------------------------------------------------
    def request_reload(self) -> None:
        """SIGHUP: reload now (from the watcher thread, not the signal handler)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="tls-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _watch(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.cfg.watch_s or None)
            self._wake.clear()
            if self._stop.is_set():
                return
            if woken:
                log.info("tls: SIGHUP: reloading %s", ", ".join(str(p) for p in self.cfg.files))
                self.reload()
            elif self.loaded is not None and _signature(self.cfg.files) != self.loaded.signature:
                time.sleep(0.2)  # a renewal writes several files: let the last one land
                self.reload()

    # -- refusals ----------------------------------------------------------------------------------
    def _refuse(self, rule: str, detail: str) -> None:
        self.refused[rule] += 1
        now = time.monotonic()
        if now - self._last_log.get(rule, -1e9) >= 10.0:  # one line per rule per 10 s at most
            self._last_log[rule] = now
            log.warning("tls: refused (%s, %d so far): %s", rule, self.refused[rule], detail)

    def _server_failure(self, exc: BaseException) -> None:
        rule = "tls.client_certificate" if isinstance(exc, ssl.SSLCertVerificationError) else "tls.handshake"
        self._refuse(rule, f"incoming TLS handshake failed: {exc}")

    def _client_failure(self, exc: BaseException) -> None:
        self._refuse("tls.peer_certificate", f"a peer's TLS handshake failed: {exc}")

    # -- the server side ---------------------------------------------------------------------------
    def protocol_class(self, base: type) -> type:
        """uvicorn's HTTP protocol, remembering each TLS connection's client certificate for ``guard``."""
        connections = self.connections

        class Protocol(base):
            def connection_made(self, transport: Any) -> None:
                obj = transport.get_extra_info("ssl_object")
                peer = transport.get_extra_info("peername")
                if obj is not None and isinstance(peer, (tuple, list)) and len(peer) >= 2:
                    if len(connections) >= 4096:  # a WebSocket upgrade hands the transport on without connection_lost
                        for key in [k for k, (_, t) in connections.items() if t.is_closing()]:
                            del connections[key]
                    self._rantai_peer = (str(peer[0]), int(peer[1]))
                    connections[self._rantai_peer] = (obj.getpeercert(binary_form=True), transport)
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                peer = getattr(self, "_rantai_peer", None)
                if peer is not None:
                    connections.pop(peer, None)
                super().connection_lost(exc)

        return Protocol

    def peer_problem(self, client: Any) -> str | None:
        """Why a request to a peer endpoint is refused for its client certificate (``None``: accepted)."""
        if not self.cfg.require_client_cert:
            return None
        if not client:
            return "no client address"
        der = self.connections.get((str(client[0]), int(client[1])), (None, None))[0]
        if der is None:
            return ("peer endpoints require a client certificate issued by this network's CA "
                    "(tls.require_client_cert): none was presented")
        return pin_problem(der, self.cfg.pinned_peers)

    def guard(self, app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """The ASGI app, with peer endpoints refused (403 ``peer.client_certificate``) to clients without an
        acceptable certificate."""
        import json

        async def guarded(scope: dict, receive: Callable, send: Callable) -> None:
            if scope.get("type") == "http" and scope.get("path", "").startswith(PEER_PATHS):
                problem = self.peer_problem(scope.get("client"))
                if problem is not None:
                    self._refuse("peer.client_certificate", f"{scope.get('client')}: {problem}")
                    body = json.dumps({"error": "peer.client_certificate", "message": problem}).encode()
                    await send({"type": "http.response.start", "status": 403,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
            await app(scope, receive, send)

        return guarded

    def status(self) -> dict[str, Any]:
        info = self.loaded
        return {
            "enabled": True,
            "certificate": None if info is None else {
                "subject": info.subject, "sha256": info.fingerprint, "not_after": info.not_after.isoformat(),
                "days_left": (info.not_after - dt.datetime.now(dt.timezone.utc)).days,
                "loaded_at": dt.datetime.fromtimestamp(info.loaded_at, dt.timezone.utc).isoformat(),
            },
            "reloads": self.reloads,
            "last_error": self.last_error or None,
            "require_client_cert": self.cfg.require_client_cert,
            "pinned_peers": len(self.cfg.pinned_peers),
            "refused": {rule: self.refused.get(rule, 0) for rule in RULES},
        }


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER

