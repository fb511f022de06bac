"""Credentials and TLS reach NATS from the settings; secrets never reach a log or a file others can read."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
import signal
import socket
import stat
import time
from pathlib import Path

import nkeys
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nats.errors import Error as NatsError

from tests.harness import wait_for
from tests.processes import ServiceProcesses
from tradetape.bus.auth import NatsAuth
from tradetape.bus.connect import connect
from tradetape.client import ClientQueryError, TapeClient, TapeUnavailable
from tradetape.ground.private_files import write_private_file
from tradetape.ground.redaction import redact_url
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(120)


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")}
    return {**base, **extra}


# --- pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nats://ingest:S3cret@10.0.0.1:4222", "nats://ingest:***@10.0.0.1:4222"),
        ("tls://s3cr3t-token@nats:4222", "tls://***@nats:4222"),
        ("nats://a:x@h1:4222,nats://b:y@h2:4222", "nats://a:***@h1:4222,nats://b:***@h2:4222"),
        ("nats unreachable url=nats://u:p@h:1 error=refused", "nats unreachable url=nats://u:***@h:1 error=refused"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ('{"ws":"wss://data-stream.binance.vision","s":"btcusdt@aggTrade"}', None),
        ("wss://host/stream?streams=btcusdt@aggTrade", None),
    ],
)
def test_redact_url_masks_user_info_only(text: str, expected: str | None) -> None:
    assert redact_url(text) == (text if expected is None else expected)


def test_private_files_are_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        target = tmp_path / "dir" / "nats.url"
        write_private_file(target, "nats://u:p@h:4222\n")
        assert private(target) and target.read_text() == "nats://u:p@h:4222\n"
        target.chmod(0o644)
        write_private_file(target, "again\n")  # replaced by a new file, not rewritten in place
        assert private(target) and target.read_text() == "again\n"
        assert [p.name for p in target.parent.iterdir()] == ["nats.url"]
    finally:
        os.umask(old)


def test_secrets_stay_hidden_in_settings_but_reach_children_and_nats(tmp_path: Path) -> None:
    settings = Settings(nats_url="nats://h:4222", nats_user="query", nats_password="pw-1", nats_token="tok-2")
    assert "pw-1" not in repr(settings) and "tok-2" not in str(settings)
    env = settings.to_env()
    assert env["TRADETAPE_NATS_PASSWORD"] == "pw-1" and env["TRADETAPE_NATS_TOKEN"] == "tok-2"
    options = NatsAuth.from_settings(settings).connect_options()
    assert options == {"user": "query", "password": "pw-1", "token": "tok-2"}
    with pytest.raises(ValueError, match="nats_user and nats_password go together"):
        Settings(nats_user="query")
    with pytest.raises(ValueError, match="nats_creds_file"):
        Settings(nats_creds_file=tmp_path / "missing.creds")


# --- a real run ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_up_with_a_password_in_nats_url_logs_it_redacted_and_keeps_the_url_file_private(
    tmp_path: Path, processes: ServiceProcesses
) -> None:
    """`tradetape up --simulate` against a NATS that wants a password: the services start
    before the server (so they log the URL while retrying), store the replay, and no log
    line holds the password."""
    password = "p" + secrets.token_hex(16)
    config = tmp_path / "nats.conf"
    write_private_file(config, f'authorization {{ user: tape, password: "{password}" }}\n')
    port = free_port()
    url = f"nats://tape:{password}@127.0.0.1:{port}"
    data = tmp_path / "data"
    up = processes.start(
        ["up", "--simulate"],
        clean_env(NATS_URL=url, TRADETAPE_DATA_DIR=str(data), TRADETAPE_SYMBOLS="BTCUSDT"),
        cwd=tmp_path,
    )
    log = tmp_path / "logs" / "up-0.log"

    async def retrying() -> bool:
        return "nats unreachable, retrying" in log.read_text()

    await wait_for(retrying, timeout=60)
    async with EmbeddedNatsServer(tmp_path / "nats", port=port, config_file=config):
        async with await TapeClient.connect(Settings(nats_url=url)) as tape:

            async def stored() -> bool:
                try:
                    return (await tape.query("coverage", "BTCUSDT")).trade_count == 5000
                except TapeUnavailable:
                    return False

            await wait_for(stored, timeout=60)
        url_file = data / "nats.url"
        assert url_file.read_text().strip() == url and private(url_file)
        assert password not in (data / "tradetape.lock").read_text()
        up.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(up.wait, 60) == 0
    output = log.read_text()
    assert password not in output
    assert f"nats://tape:***@127.0.0.1:{port}" in output, output[-3000:]
    with pytest.raises(TapeUnavailable) as refused:
        await TapeClient.connect(Settings(nats_url=f"nats://tape:wrong-{password}@127.0.0.1:{port}"))
    assert password not in str(refused.value)


# --- token, nkey and mutual TLS -------------------------------------------------------------


async def assert_accepted_and_refused(
    url: str,
    good: Settings,
    bad: Settings,
    refusal: type[Exception] = NatsError,
    match: str | None = "Authorization Violation",
) -> None:
    nc = await connect(url, "test-auth", auth=NatsAuth.from_settings(good), retry=False)
    try:
        await nc.publish("any.subject", b"x")
        await nc.flush(timeout=5)
    finally:
        await nc.close()
    with pytest.raises(refusal, match=match):
        await connect(url, "test-refused", auth=NatsAuth.from_settings(bad), retry=False, connect_timeout=2)


async def test_a_token_from_the_settings_is_accepted_and_a_wrong_one_refused(tmp_path: Path) -> None:
    token = "t" + secrets.token_hex(16)
    config = tmp_path / "nats.conf"
    write_private_file(config, f'authorization {{ token: "{token}" }}\n')
    async with EmbeddedNatsServer(tmp_path / "nats", config_file=config) as server:
        await assert_accepted_and_refused(server.url, Settings(nats_token=token), Settings(nats_token=token + "x"))


async def test_an_nkey_seed_file_from_the_settings_signs_the_server_nonce(tmp_path: Path) -> None:
    def user_seed(name: str) -> tuple[Path, str]:
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
        path = tmp_path / f"{name}.nk"
        write_private_file(path, seed.decode() + "\n")
        return path, nkeys.from_seed(bytearray(seed)).public_key.decode()

    (known, public), (stranger, _) = user_seed("known"), user_seed("stranger")
    config = tmp_path / "nats.conf"
    write_private_file(config, f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n')
    async with EmbeddedNatsServer(tmp_path / "nats", config_file=config) as server:
        await assert_accepted_and_refused(
            server.url, Settings(nats_nkey_seed_file=known), Settings(nats_nkey_seed_file=stranger)
        )


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write_pair(
    tmp_path: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private_file(key_file, pem.decode())
    return cert_file, key_file


async def test_mutual_tls_with_the_ca_and_client_certificate_from_the_settings(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("tradetape test CA", ca_key, None)
    ca_file, _ = _write_pair(tmp_path, "ca", ca, ca_key)
    pairs = {}
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        pairs[name] = _write_pair(tmp_path, name, _certificate(name, key, (ca, ca_key)), key)
    config = tmp_path / "nats.conf"
    server_cert, server_key = pairs["server"]
    write_private_file(
        config,
        f'tls {{ cert_file: "{server_cert}", key_file: "{server_key}", ca_file: "{ca_file}", verify: true }}\n',
    )
    client_cert, client_key = pairs["client"]
    async with EmbeddedNatsServer(tmp_path / "nats", config_file=config) as server:
        url = server.url.replace("nats://", "tls://")
        await assert_accepted_and_refused(
            url,
            Settings(nats_tls_ca_file=ca_file, nats_tls_cert_file=client_cert, nats_tls_key_file=client_key),
            Settings(nats_tls_ca_file=ca_file),
            refusal=OSError,  # the server ends the handshake of a client without a certificate
            match=None,
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keypair(prefix: int) -> tuple[bytes, nkeys.KeyPair]:
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    return seed, nkeys.from_seed(bytearray(seed))


def _jwt(issuer: nkeys.KeyPair, subject: nkeys.KeyPair, nats_claims: dict[str, object]) -> str:
    """A NATS JWT (v2) as `nsc` writes one: claims signed by the issuer's nkey."""
    header = _b64(b'{"typ":"JWT","alg":"ed25519-nkey"}')
    claims: dict[str, object] = {
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "sub": subject.public_key.decode(),
        "name": subject.public_key.decode()[:8],
        "nats": {**nats_claims, "version": 2},
    }
    claims["jti"] = base64.b32encode(hashlib.sha256(orjson.dumps(claims)).digest()).decode().rstrip("=")
    body = _b64(orjson.dumps(claims))
    return f"{header}.{body}.{_b64(issuer.sign(f'{header}.{body}'.encode()))}"


ACCOUNT_LIMITS = {"limits": {"subs": -1, "data": -1, "payload": -1, "conn": -1, "leaf": -1, "wildcards": True}}


def _creds_file(path: Path, account: nkeys.KeyPair) -> Path:
    seed, user = _keypair(nkeys.PREFIX_BYTE_USER)
    user_jwt = _jwt(account, user, {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
    write_private_file(
        path,
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n",
    )
    return path


async def test_a_creds_file_from_the_settings_logs_in_to_a_server_in_operator_mode(tmp_path: Path) -> None:
    _, operator = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    (_, account), (_, system), (_, stranger) = (_keypair(nkeys.PREFIX_BYTE_ACCOUNT) for _ in range(3))
    accounts = {
        key.public_key.decode(): _jwt(operator, key, {"type": "account", **ACCOUNT_LIMITS}) for key in (account, system)
    }
    config = tmp_path / "nats.conf"
    write_private_file(
        config,
        f"operator: {_jwt(operator, operator, {'type': 'operator'})}\nresolver: MEMORY\n"
        f"system_account: {system.public_key.decode()}\n"
        f"resolver_preload: {{ {', '.join(f'{key}: {jwt}' for key, jwt in accounts.items())} }}\n",
    )
    async with EmbeddedNatsServer(tmp_path / "nats", config_file=config) as server:
        await assert_accepted_and_refused(
            server.url,
            Settings(nats_creds_file=_creds_file(tmp_path / "user.creds", account)),
            Settings(nats_creds_file=_creds_file(tmp_path / "stranger.creds", stranger)),
        )


async def test_a_symbol_is_checked_before_a_subject_is_built_from_it(nats_url: str) -> None:
    async with await TapeClient.connect(url=nats_url) as tape:
        for symbol in ("BTC.>", "BTC*", "BTC USDT", "ΒTC"):
            with pytest.raises(ClientQueryError, match="is not a Binance symbol") as refused:
                await tape.query("coverage", symbol)
            assert refused.value.code == "invalid_request"
