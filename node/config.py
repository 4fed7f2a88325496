"""The node's TOML configuration: who it is, where its key, genesis and data live, where it listens.

Example (paths are relative to the config file's folder)::

    id = "3f2a..."            # the validator id (derived from its public key)
    name = "v0"
    key = "keys/v0.pem"
    genesis = "genesis.json"
    data_dir = "data/v0"
    tick_ms = 10
    verify_workers = 2        # threads that verify signatures; 0 = on the event loop (see docs/operations.md)

    [listen]
    host = "127.0.0.1"
    port = 7100

    [[peers]]                 # optional: overrides the genesis URL of a validator
    id = "9be1..."
    url = "http://127.0.0.1:7101"

    [admission]               # optional: per-client limits (node/admission.py, docs/operations.md)
    member_records_per_s = 2000

    [tls]                     # optional: HTTPS for the API and peer links (node/tls.py, docs/operations.md "TLS")
    cert = "tls/v0.crt"
    key = "tls/v0.key"
    ca = "tls/ca.crt"         # verifies the peers' certificates
    require_client_cert = true

    [log]                     # optional (node/logs.py, docs/operations.md "Logs")
    level = "info"            # debug | info | warning | error
    format = "text"           # text | json (one JSON object per line)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from rantai.client.format.errors import ConfigError

from .admission import AdmissionConfig
from .logs import FORMATS, LEVELS
from .tls import TlsConfig

__all__ = ["ConfigError", "NodeConfig"]


@dataclass(frozen=True)
class NodeConfig:
    id: str
    key_path: Path
    genesis_path: Path
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 7100
    name: str = ""
    peers: dict[str, str] = field(default_factory=dict)  # validator id -> URL (overrides genesis)
    tick_ms: int = 10
    verify_workers: int = 2
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    log_level: str = "info"
    log_format: str = "text"
    tls: TlsConfig | None = None  # None: plain HTTP (loopback devnets)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "NodeConfig":
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path} is not valid TOML: {exc}") from exc
        return cls.from_obj(doc, base=path.parent)

    @classmethod
    def from_obj(cls, doc: dict[str, Any], base: Path = Path(".")) -> "NodeConfig":
        def need(key: str, kind: type) -> Any:
            v = doc.get(key)
            if not isinstance(v, kind):
                raise ConfigError(f"config: {key!r} ({kind.__name__}) is required")
            return v

        listen = doc.get("listen", {})
        if not isinstance(listen, dict):
            raise ConfigError("config: [listen] must be a table")
        port = listen.get("port", 7100)
        if type(port) is not int or not 0 < port < 65536:
            raise ConfigError("config: listen.port must be a TCP port number")
        peers: dict[str, str] = {}
        for i, p in enumerate(doc.get("peers", [])):
            if not isinstance(p, dict) or not isinstance(p.get("id"), str) or not isinstance(p.get("url"), str):
                raise ConfigError(f"config: peers[{i}] needs an id and a url")
            peers[p["id"]] = p["url"].rstrip("/")
        tick_ms = doc.get("tick_ms", 10)
        if type(tick_ms) is not int or not 1 <= tick_ms <= 1000:
            raise ConfigError("config: tick_ms must be 1..1000")
        verify_workers = doc.get("verify_workers", 2)
        if type(verify_workers) is not int or not 0 <= verify_workers <= 64:
            raise ConfigError("config: verify_workers must be 0..64")
        log_doc = doc.get("log", {})
        if not isinstance(log_doc, dict):
            raise ConfigError("config: [log] must be a table")
        log_level, log_format = log_doc.get("level", "info"), log_doc.get("format", "text")
        if log_level not in LEVELS:
            raise ConfigError(f"config: log.level must be one of {', '.join(LEVELS)}")
        if log_format not in FORMATS:
            raise ConfigError(f"config: log.format must be one of {', '.join(FORMATS)}")
        return cls(
            id=need("id", str),
            name=str(doc.get("name", "")),
            key_path=(base / need("key", str)),
            genesis_path=(base / need("genesis", str)),
            data_dir=(base / need("data_dir", str)),
            host=str(listen.get("host", "127.0.0.1")),
            port=port,
            peers=peers,
            tick_ms=tick_ms,
            verify_workers=verify_workers,
            admission=AdmissionConfig.from_obj(doc.get("admission")),
            log_level=log_level,
            log_format=log_format,
            tls=TlsConfig.from_obj(doc.get("tls"), base),
        )

    def to_obj(self, base: Path | None = None) -> dict[str, Any]:
        def rel(p: Path) -> str:
            if base is not None:
                try:
                    return str(p.resolve().relative_to(base.resolve()))
                except ValueError:
                    pass
            return str(p)

        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "key": rel(self.key_path),
            "genesis": rel(self.genesis_path),
            "data_dir": rel(self.data_dir),
            "tick_ms": self.tick_ms,
            "verify_workers": self.verify_workers,
            "listen": {"host": self.host, "port": self.port},
        }
        if self.admission != AdmissionConfig():
            doc["admission"] = self.admission.to_obj()
        if (self.log_level, self.log_format) != ("info", "text"):
            doc["log"] = {"level": self.log_level, "format": self.log_format}
        if self.tls is not None:
            doc["tls"] = self.tls.to_obj(rel)
        if self.peers:
            doc["peers"] = [{"id": k, "url": v} for k, v in self.peers.items()]
        return doc

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tomli_w.dumps(self.to_obj(base=path.parent)), encoding="utf-8")
        return path

    @property
    def url(self) -> str:
        return f"{'http' if self.tls is None else 'https'}://{self.host}:{self.port}"
