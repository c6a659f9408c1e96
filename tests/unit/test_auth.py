"""Digest authentication: known vectors, SHA-256, stale nonces, replay protection."""

from __future__ import annotations

from centralino.switch.sip.auth import (
    AuthResult,
    DigestChallenge,
    DigestClient,
    DigestCredentials,
    DigestServer,
    NonceManager,
    digest_response,
)


def test_rfc2617_vector():
    # RFC 2617 §3.5's example (HTTP, MD5, qop=auth)
    r = digest_response(algorithm="MD5", username="Mufasa", realm="testrealm@host.com",
                        password="Circle Of Life", method="GET", uri="/dir/index.html",
                        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth", nc="00000001",
                        cnonce="0a4f113b")
    assert r == "6629fae49393a05397450978507c4ef1"


def test_rfc7616_sha256_vector():
    # RFC 7616 §3.9.1's SHA-256 example
    r = digest_response(algorithm="SHA-256", username="Mufasa", realm="http-auth@example.org",
                        password="Circle of Life", method="GET", uri="/dir/index.html",
                        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", qop="auth",
                        nc="00000001", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert r == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def _server(lifetime: float = 300.0) -> DigestServer:
    return DigestServer("pbx", NonceManager(b"k" * 32, lifetime), ("SHA-256", "MD5"))


PASSWORDS = {"1001": "pw"}.get


def _creds(server: DigestServer, now: float, alg: str = "MD5", password: str = "pw") -> DigestCredentials:
    challenge = next(c for c in map(DigestChallenge.parse, server.challenges(now)) if c.algorithm == alg)
    value = DigestClient("1001", password).authorize(challenge, "REGISTER", "sip:pbx")
    return DigestCredentials.parse(value)


def test_both_algorithms_verify():
    s = _server()
    assert s.verify(_creds(s, 10.0, "MD5"), "REGISTER", PASSWORDS, 10.0) is AuthResult.OK
    assert s.verify(_creds(s, 10.0, "SHA-256"), "REGISTER", PASSWORDS, 10.0) is AuthResult.OK


def test_wrong_password_and_unknown_user_fail_alike():
    s = _server()
    assert s.verify(_creds(s, 1.0, password="nope"), "REGISTER", PASSWORDS, 1.0) is AuthResult.FAILED
    c = _creds(s, 1.0)
    from dataclasses import replace

    unknown = replace(c, username="9999")
    assert s.verify(unknown, "REGISTER", PASSWORDS, 1.0) is AuthResult.FAILED


def test_expired_nonce_is_stale_and_challenge_says_so():
    s = _server(lifetime=30.0)
    c = _creds(s, 0.0)
    assert s.verify(c, "REGISTER", PASSWORDS, 31.0) is AuthResult.STALE
    assert "stale=true" in s.challenges(31.0, stale=True)[0]


def test_forged_nonce_fails():
    s = _server()
    from dataclasses import replace
    c = replace(_creds(s, 0.0), nonce="1.2.3")
    assert s.verify(c, "REGISTER", PASSWORDS, 0.0) is AuthResult.FAILED


def test_nonce_count_replay_is_refused():
    s = _server()
    c = _creds(s, 0.0)
    assert s.verify(c, "REGISTER", PASSWORDS, 1.0) is AuthResult.OK
    assert s.verify(c, "REGISTER", PASSWORDS, 2.0) is AuthResult.REPLAY  # same nc again


def test_growing_nonce_count_is_accepted():
    s = _server()
    challenge = DigestChallenge.parse(s.challenges(0.0)[1])
    client = DigestClient("1001", "pw")
    for i in range(3):
        c = DigestCredentials.parse(client.authorize(challenge, "REGISTER", "sip:pbx"))
        assert c.nc == f"{i + 1:08x}"
        assert s.verify(c, "REGISTER", PASSWORDS, 1.0 + i) is AuthResult.OK


def test_client_prefers_sha256():
    s = _server()
    assert DigestClient.pick(list(reversed(s.challenges(0.0)))).algorithm == "SHA-256"


def test_challenge_round_trip():
    c = DigestChallenge("r", "n", "SHA-256", "auth", "o", True)
    assert DigestChallenge.parse(c.serialize()) == c
