"""Real MQTT brokers for the tests: Debian's mosquitto, started on a free loopback port.

A missing `mosquitto` binary fails the test that needs it (CI installs it: .ci/run's apt list); it is
never a skip. Persistence is on, so a restarted broker keeps the queued QoS 1 messages of persistent
sessions, as a production broker does.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    """One mosquitto process with a data directory that survives `restart()`."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
        )
        if binary is None:
            raise RuntimeError(
                "mosquitto is not installed (apt-get install -y mosquitto): the MQTT tests need it"
            )
        self.binary = binary
        self.port = free_port()
        self.directory = directory
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {directory}/\nmax_queued_messages 100000\n"
            f"log_dest file {directory}/mosquitto.log\n"
            # Run as whoever runs the tests (as root, mosquitto would drop to a user that cannot write here).
            f"user {getpass.getuser()}\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {(self.directory / 'mosquitto.log').read_text()}")
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: mosquitto writes its persistence file on the way out
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def mosquitto(tmp_path: Path):
    """A running mosquitto on a free loopback port (stopped after the test)."""
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


def make_tls_files(directory: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it (PEM files in `directory`)."""

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("vigil test CA"))
        .issuer_name(name("vigil test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


@pytest.fixture
def mosquitto_tls(tmp_path: Path):
    """A mosquitto that speaks only TLS, with the CA file that verifies it (``broker.tls["ca"]``)."""
    broker = Mosquitto(tmp_path)
    broker.tls = make_tls_files(tmp_path)
    broker.config.write_text(
        broker.config.read_text()
        + f"cafile {broker.tls['ca']}\ncertfile {broker.tls['cert']}\nkeyfile {broker.tls['key']}\n"
    )
    broker.start()
    yield broker
    broker.stop()


class Amqtt:
    """The demo's embedded broker (amqtt, from its own virtualenv: settings.VIGIL_DEMO_MQTT_BROKER) on a
    free loopback port. Missing, it fails the test (`make test` installs it)."""

    def __init__(self, directory: Path, binary: str) -> None:
        if not Path(binary).exists():
            raise RuntimeError(f"amqtt is not installed at {binary} (`make test` / `make demo` install it)")
        self.binary = binary
        self.port = free_port()
        self.config = directory / "amqtt.yaml"
        self.config.write_text(
            "---\nlisteners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        self.log = directory / "amqtt.log"
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("w") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"amqtt exited: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)
        raise RuntimeError("amqtt did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def amqtt_broker(tmp_path: Path, settings):
    broker = Amqtt(tmp_path, settings.VIGIL_DEMO_MQTT_BROKER)
    broker.start()
    yield broker
    broker.stop()
