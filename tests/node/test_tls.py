"""TLS: the [tls] config, the loud warning of a plain-HTTP node off loopback, and real validator processes
over HTTPS with mTLS on peer endpoints: commits, refusals by rule (no client certificate, a certificate
from another CA, a pin that does not match), and certificate rotation without a restart (SIGHUP, and
the files changing). Certificates are made in the test with ``cryptography`` (client/devcerts.py)."""

from __future__ import annotations

import hashlib
import signal
import ssl

import httpx
import pytest
from ports import free_base_port

from rantai.client.devcerts import CertificateAuthority
from rantai.client.devnet import Devnet
from rantai.client.format.errors import ConfigError
from rantai.client.format.pins import fingerprint, parse_pins
from rantai.client.http import Client, NoNodeAvailable
from rantai.client.tls import context
from rantai.node.config import NodeConfig
from rantai.node.tls import NodeTls, TlsConfig, plain_http_warning

from .conftest import event
from .procs import wait_until

BASE = {"id": "a" * 16, "key": "k.pem", "genesis": "g.json", "data_dir": "d"}


def test_tls_table_paths_relative_to_the_config_and_its_rules(tmp_path):
    cfg = NodeConfig.from_obj({**BASE, "tls": {"cert": "tls/n.crt", "key": "tls/n.key", "ca": "tls/ca.crt",
                                               "require_client_cert": True,
                                               "pinned_peers": ["AB:" * 31 + "AB"]}}, base=tmp_path)
    assert cfg.tls is not None and cfg.tls.cert == tmp_path / "tls/n.crt" and cfg.tls.ca == tmp_path / "tls/ca.crt"
    assert cfg.tls.pinned_peers == frozenset({"ab" * 32})
    assert cfg.url.startswith("https://")
    assert NodeConfig.from_obj(cfg.to_obj(base=tmp_path), base=tmp_path).tls == cfg.tls
    for bad in ({"cert": "a"}, {"cert": "a", "key": "b", "require_client_cert": True},
                {"cert": "a", "key": "b", "pinned_peers": ["12"]}, {"cert": "a", "key": "b", "colour": 1}):
        with pytest.raises(ConfigError):
            NodeConfig.from_obj({**BASE, "tls": bad})
    assert NodeConfig.from_obj(BASE).tls is None and NodeConfig.from_obj(BASE).url.startswith("http://")


def test_plain_http_warns_off_loopback_only():
    assert plain_http_warning("127.0.0.1", 7100) is None and plain_http_warning("::1", 7100) is None
    assert plain_http_warning("localhost", 7100) is None
    for host in ("0.0.0.0", "198.18.0.1", "node.example.org"):
        warning = plain_http_warning(host, 7100)
        assert warning is not None and "without TLS" in warning and host in warning


def test_a_reload_that_does_not_load_keeps_the_certificate_in_use(tmp_path):
    ca = CertificateAuthority(tmp_path / "ca")
    a = ca.issue(tmp_path, "a")
    tls = NodeTls(TlsConfig(cert=a.cert, key=a.key, ca=ca.cert_path, require_client_cert=True))
    first = tls.status()["certificate"]["sha256"]
    b = ca.issue(tmp_path / "other", "b")
    a.key.write_bytes(b.key.read_bytes())  # a key that does not match the certificate
    assert not tls.reload()
    st = tls.status()
    assert st["certificate"]["sha256"] == first and st["reloads"] == 0 and "cannot load" in st["last_error"]
    ca.issue(tmp_path, "a")  # a matching pair again
    assert tls.reload()
    st = tls.status()
    assert st["certificate"]["sha256"] != first and st["reloads"] == 1 and st["last_error"] is None
    with pytest.raises(ConfigError):
        NodeTls(TlsConfig(cert=tmp_path / "missing.crt", key=a.key))


def test_pins_are_sha256_of_the_der_certificate(tmp_path):
    ca = CertificateAuthority(tmp_path)
    der = ssl.PEM_cert_to_DER_cert(ca.cert_path.read_text())
    assert fingerprint(der) == hashlib.sha256(der).hexdigest()
    assert parse_pins(["sha256:" + fingerprint(der).upper()]) == {fingerprint(der)}


def test_client_config_tls_settings_from_file_and_environment(tmp_path):
    from rantai.client.config import load_config

    ca = CertificateAuthority(tmp_path / "ca")
    me = ca.issue(tmp_path, "me")
    (tmp_path / "rantai.toml").write_text(f'ca_file = "ca/ca.crt"\ncert = "me.crt"\ncert_key = "me.key"\n'
                                          f'pins = ["{"ab" * 32}"]\n', encoding="utf-8")
    cfg = load_config(env={}, cwd=tmp_path)
    assert cfg.ca_file == tmp_path / "ca/ca.crt" and cfg.cert == me.cert and cfg.pins == ["ab" * 32]
    assert isinstance(cfg.tls_context(), ssl.SSLContext)
    env = load_config(env={"RANTAI_CA_FILE": str(ca.cert_path), "RANTAI_PINS": "cd" * 32}, cwd=tmp_path / "ca")
    assert env.ca_file == ca.cert_path and env.pins == ["cd" * 32] and env.sources["ca_file"] == "env"
    assert load_config(env={}, cwd=tmp_path / "ca").tls_context() is None  # nothing set: httpx's defaults
    with pytest.raises(ConfigError):
        load_config(env={"RANTAI_CA_FILE": str(tmp_path / "missing.crt")}, cwd=tmp_path / "ca").tls_context()


def _served_fingerprint(url: str) -> str:
    """SHA-256 of the certificate a new connection to ``url`` is served (the handshake alone, unverified)."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    return fingerprint(ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port)))))


def _file_fingerprint(path) -> str:
    return fingerprint(ssl.PEM_cert_to_DER_cert(path.read_text()))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_validators_over_https_with_mtls_refusals_and_rotation_without_restart(tmp_path):
    # Goal: four validator processes commit over HTTPS (peer links with client certificates); a
    # client without a certificate, or with one from another CA, is refused on peer endpoints and
    # counted by rule; a client pinning another certificate refuses the node; v0's certificate is
    # replaced and SIGHUP makes new connections use it, v1's is replaced and the file watcher loads
    # it; commits go on through both rotations, with no node restarted.
    params = {"checkpoint_interval": 4, "window": 4, "view_change_timeout_ms": 1000, "batch_timeout_ms": 5}
    net = Devnet(tmp_path / "devnet", validators=4, base_port=free_base_port(4), params=params, tls=True)
    tls_dir = net.dir / "tls"
    try:
        net.start()
        net.wait_ready(timeout=60)
        assert all(u.startswith("https://") for u in net.urls)
        acme = net.member_key("acme")
        with Client(net.genesis_path, net.urls, acme, verify=net.ca_file) as client:
            receipt = client.submit(event(), wait=True)
            assert receipt.height >= 1

        http = httpx.Client(verify=net.verify, timeout=10.0)
        st = http.get(net.urls[0] + "/v1/status").json()
        assert st["tls"]["enabled"] and st["tls"]["require_client_cert"]
        assert all(p["url"].startswith("https://") for p in st["peers"])

        # No client certificate: refused on the peer endpoints (403, named rule), fine elsewhere.
        r = http.post(net.urls[0] + "/v1/peer/messages", content=b"x")
        assert r.status_code == 403 and r.json()["error"] == "peer.client_certificate"
        # A certificate from another CA: the handshake itself is refused.
        stranger = CertificateAuthority(tmp_path / "stranger").issue(tmp_path / "stranger", "v9")
        with pytest.raises(httpx.HTTPError):
            httpx.post(net.urls[0] + "/v1/peer/messages", content=b"x", timeout=10.0,
                       verify=context(net.ca_file, stranger.cert, stranger.key))
        # Plain HTTP to an HTTPS port.
        with pytest.raises(httpx.HTTPError):
            httpx.get(net.urls[0].replace("https://", "http://") + "/v1/status", timeout=5.0)
        wait_until("v0 counts its refusals", lambda: (lambda r: r["peer.client_certificate"] >= 1
                                                      and r["tls.client_certificate"] >= 1
                                                      and r["tls.handshake"] >= 1)(
            http.get(net.urls[0] + "/v1/status").json()["tls"]["refused"]), timeout=30)
        metrics = http.get(net.urls[0] + "/metrics").text
        assert 'rantai_tls_refusals_total{rule="peer.client_certificate"}' in metrics
        assert "rantai_tls_certificate_days_left" in metrics

        # A client pinning another certificate refuses every node; pinning v0's own accepts it.
        with Client(net.genesis_path, net.urls[:1], verify=context(pins=["ab" * 32])) as pinned:
            with pytest.raises(NoNodeAvailable, match="certificate pin"):
                pinned.head()
        with Client(net.genesis_path, net.urls[:1],
                    verify=context(net.ca_file, pins=[_file_fingerprint(tls_dir / "v0.crt")])) as pinned:
            assert pinned.head().height >= 1

        # Rotation on v0 by SIGHUP.
        before = _served_fingerprint(net.urls[0])
        assert before == _file_fingerprint(tls_dir / "v0.crt")
        ca = CertificateAuthority(tls_dir)
        ca.issue(tls_dir, "v0")
        net.procs[0].send_signal(signal.SIGHUP)
        after = _file_fingerprint(tls_dir / "v0.crt")
        wait_until("v0 serves its new certificate", lambda: _served_fingerprint(net.urls[0]) == after, timeout=30)
        assert http.get(net.urls[0] + "/v1/status").json()["tls"]["certificate"]["sha256"] == after
        # Rotation on v1 by replacing the files only (the watcher polls every 5 s).
        ca.issue(tls_dir, "v1")
        new_v1 = _file_fingerprint(tls_dir / "v1.crt")
        wait_until("v1 serves its new certificate", lambda: _served_fingerprint(net.urls[1]) == new_v1, timeout=60)
        # Peer links reopen with the new certificates: commits go on, submitted through v0 and v1.
        for url in net.urls[:2]:
            with Client(net.genesis_path, [url], acme, verify=net.ca_file) as client:
                assert client.submit(event(), wait=True).height >= 1
        assert all(net.running(i) for i in range(4))
        for i in range(2):
            assert http.get(net.urls[i] + "/v1/status").json()["tls"]["reloads"] == 1
    finally:
        net.stop()
