"""Where the ``rantai`` CLI finds its nodes, identity and genesis.

Precedence, highest first: command-line flags > environment variables > a TOML file.

=====================  ==============================  =====================================
setting                environment variable            TOML key
=====================  ==============================  =====================================
node URLs              ``RANTAI_NODES`` (comma or      ``nodes = ["http://…", …]``
                       space separated)
identity (key file)    ``RANTAI_KEY``                  ``key = "acme.pem"``
genesis file           ``RANTAI_GENESIS``              ``genesis = "genesis.json"``
key passphrase         ``RANTAI_PASSPHRASE``           (never in the file)
request timeout (s)    ``RANTAI_TIMEOUT``              ``timeout = 10``
events' time zone      ``RANTAI_TZ``                   ``tz = "+07:00"`` (or ``"Asia/Jakarta"``;
                                                       default UTC)
CA for https:// nodes  ``RANTAI_CA_FILE``              ``ca_file = "ca.crt"``
pinned node certs      ``RANTAI_PINS`` (comma/space)   ``pins = ["sha256 hex", …]``
client certificate     ``RANTAI_CERT``                 ``cert = "me.crt"``
its key                ``RANTAI_CERT_KEY``             ``cert_key = "me.key"``
=====================  ==============================  =====================================

``rantai --ca-file/--pin/--cert/--cert-key`` (before the command) set the same as flags.

The TOML file is the one named by ``--config`` or ``RANTAI_CONFIG``, else ``./rantai.toml``, else
``$XDG_CONFIG_HOME/rantai/config.toml`` (``~/.config/rantai/config.toml``). Relative paths in it
are relative to the file. With no node URL anywhere, the validators' URLs in the genesis are used.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .format.errors import ConfigError

__all__ = ["Config", "ConfigError", "config_files", "load_config", "parse_tz"]

_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


def parse_tz(text: str) -> _dt.tzinfo:
    """A time zone as a user writes it: ``UTC``/``Z``, an offset ``±hh:mm``, or an IANA name (``Asia/Jakarta``)."""
    t = text.strip()
    if t.upper() in ("UTC", "Z"):
        return _dt.timezone.utc
    m = _OFFSET.fullmatch(t)
    if m:
        minutes = int(m[2]) * 60 + int(m[3])
        if int(m[3]) >= 60 or minutes > 14 * 60:
            raise ConfigError(f"config: time zone {text!r}: offsets run from -14:00 to +14:00")
        return _dt.timezone(_dt.timedelta(minutes=-minutes if m[1] == "-" else minutes))
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(t)
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"config: time zone {text!r}: UTC, an offset like +07:00, or an IANA name like "
                          "Asia/Jakarta expected") from exc


@dataclass
class Config:
    nodes: list[str] = field(default_factory=list)
    key: Path | None = None
    genesis: Path | None = None
    passphrase: str | None = None
    timeout: float = 10.0
    tz: str = "UTC"  # the time zone of events the CLI stamps or reads without an offset (parse_tz)
    ca_file: Path | None = None
    pins: list[str] = field(default_factory=list)
    cert: Path | None = None
    cert_key: Path | None = None
    file: Path | None = None  # the TOML file that was read, if any
    sources: dict[str, str] = field(default_factory=dict)  # setting -> "flag" | "env" | file path

    def load_genesis(self) -> Any:
        from .format.genesis import Genesis

        if self.genesis is None:
            raise ConfigError("config: no genesis file (use --genesis, RANTAI_GENESIS or `genesis =` in rantai.toml)")
        return Genesis.load(self.genesis)

    def tzinfo(self) -> _dt.tzinfo:
        return parse_tz(self.tz)

    def tls_context(self) -> Any:
        """The ``ssl.SSLContext`` for https:// nodes (rantai.client.tls), or ``None`` when nothing is set."""
        if self.ca_file is None and not self.pins and self.cert is None:
            return None
        from .tls import context

        return context(self.ca_file, self.cert, self.cert_key, self.pins)

    def load_identity(self, prompt: Any = None) -> Any:
        """The Signer from ``key``; asks ``prompt()`` for a passphrase when the key is encrypted and none is set."""
        from .format.errors import InvalidKey
        from .format.keys import load_key

        if self.key is None:
            raise ConfigError("config: no identity key (use --key, RANTAI_KEY or `key =` in rantai.toml)")
        try:
            return load_key(self.key, self.passphrase)
        except InvalidKey as exc:
            if self.passphrase is None and prompt is not None and "encrypted" in str(exc):
                return load_key(self.key, prompt())
            raise


def config_files(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> list[Path]:
    """The TOML files looked for, in order (the first that exists is read)."""
    env = os.environ if env is None else env
    if env.get("RANTAI_CONFIG"):
        return [Path(env["RANTAI_CONFIG"])]
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return [(cwd or Path.cwd()) / "rantai.toml", base / "rantai" / "config.toml"]


def _split_nodes(text: str) -> list[str]:
    return [u for u in re.split(r"[,\s]+", text.strip()) if u]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from exc
    known = {"nodes", "key", "genesis", "timeout", "tz", "ca_file", "pins", "cert", "cert_key"}
    unknown = set(doc) - known
    if unknown:
        raise ConfigError(f"config: {path}: unknown setting(s) {sorted(unknown)} (known: {', '.join(sorted(known))})")
    if "tz" in doc and (not isinstance(doc["tz"], str) or not parse_tz(doc["tz"])):
        raise ConfigError(f"config: {path}: tz must be a time zone (a string)")
    nodes = doc.get("nodes", [])
    if isinstance(nodes, str):
        nodes = _split_nodes(nodes)
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise ConfigError(f"config: {path}: nodes must be a list of URLs")
    pins = doc.get("pins", [])
    if not isinstance(pins, list) or not all(isinstance(p, str) for p in pins):
        raise ConfigError(f"config: {path}: pins must be a list of SHA-256 fingerprints")
    for k in ("key", "genesis", "ca_file", "cert", "cert_key"):
        if k in doc and not isinstance(doc[k], str):
            raise ConfigError(f"config: {path}: {k} must be a path (a string)")
    if "timeout" in doc and (not isinstance(doc["timeout"], (int, float)) or doc["timeout"] <= 0):
        raise ConfigError(f"config: {path}: timeout must be a positive number of seconds")
    return {**doc, "nodes": nodes}


def load_config(
    *,
    nodes: list[str] | tuple[str, ...] | None = None,
    key: str | os.PathLike[str] | None = None,
    genesis: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    tz: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Merge flags (the arguments), environment and TOML file into one ``Config``."""
    env = os.environ if env is None else env
    cfg = Config()
    file_doc: dict[str, Any] = {}
    candidates = [Path(config_file)] if config_file else config_files(env, cwd)
    for path in candidates:
        if config_file or path.is_file():
            file_doc = _read_toml(path)
            cfg.file = path
            break
    here = cfg.file.parent if cfg.file else Path(".")
    fname = str(cfg.file) if cfg.file else ""

    def pick(name: str, flag: Any, env_name: str) -> tuple[Any, str]:
        if flag not in (None, (), []):
            return flag, "flag"
        if env.get(env_name):
            return env[env_name], "env"
        if name in file_doc and file_doc[name] not in (None, []):
            return file_doc[name], fname
        return None, ""

    value, src = pick("nodes", list(nodes) if nodes else None, "RANTAI_NODES")
    if value is not None:
        urls = _split_nodes(value) if isinstance(value, str) else [u for v in value for u in _split_nodes(v)]
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ConfigError(f"config: node URL {u!r} must start with http:// or https://")
        cfg.nodes = [u.rstrip("/") for u in urls]
        cfg.sources["nodes"] = src
    for name, flag, env_name in (("key", key, "RANTAI_KEY"), ("genesis", genesis, "RANTAI_GENESIS"),
                                 ("ca_file", None, "RANTAI_CA_FILE"), ("cert", None, "RANTAI_CERT"),
                                 ("cert_key", None, "RANTAI_CERT_KEY")):
        value, src = pick(name, flag, env_name)
        if value is not None:
            p = Path(value).expanduser()
            if src == fname and not p.is_absolute():
                p = here / p
            setattr(cfg, name, p)
            cfg.sources[name] = src
    value, src = pick("timeout", timeout, "RANTAI_TIMEOUT")
    if value is not None:
        try:
            cfg.timeout = float(value)
        except ValueError as exc:
            raise ConfigError(f"config: timeout {value!r} is not a number of seconds") from exc
        cfg.sources["timeout"] = src
    value, src = pick("tz", tz, "RANTAI_TZ")
    if value is not None:
        parse_tz(value)  # refused here, with the setting's name, rather than at the first event
        cfg.tz = value
        cfg.sources["tz"] = src
    value, src = pick("pins", None, "RANTAI_PINS")
    if value is not None:
        cfg.pins = _split_nodes(value) if isinstance(value, str) else list(value)
        cfg.sources["pins"] = src
    cfg.passphrase = env.get("RANTAI_PASSPHRASE") or None
    return cfg
