"""The database hop over TLS: ``sslmode=verify-full&sslrootcert=<CA>`` in RCA_DATABASE_URL, end to end.

The embedded PostgreSQL is built without OpenSSL, so this runs Debian's ``postgresql`` server
(installed by scripts/install-postgresql-tls) in a temp folder with ``ssl=on``, accepting only
TLS connections (``hostssl``), with certificates from a throwaway CA. The store connects with
asyncpg exactly as the app does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from pipelines.database import DatabaseUnavailable
from pipelines.store import Store
from tests.conftest import REPO, free_port
from tests.support.certs import Issued, TestCA

INSTALL = REPO / "scripts" / "install-postgresql-tls"


@dataclass
class TlsPostgres:
    """A PostgreSQL with ssl=on; ``use(issued)`` restarts it with another server certificate."""

    bindir: Path
    folder: Path
    port: int
    ca: TestCA
    run_as: list[str]

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), *args],
                              capture_output=True, text=True, timeout=120)

    def use(self, issued: Issued) -> None:
        """Restart with ``issued`` as the server's certificate (files copied where the server user reads them)."""
        cert, key = self.folder / "server.crt", self.folder / "server.key"
        shutil.copyfile(issued.cert, cert)
        shutil.copyfile(issued.key, key)
        os.chmod(key, 0o600)
        _give(self.run_as, cert, key)
        options = f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key} -c port={self.port}"
        command = "restart" if (self.folder / "data" / "postmaster.pid").exists() else "start"
        started = self.pg_ctl("-w", "-l", str(self.folder / "server.log"), "-o", options, command)
        if started.returncode != 0:
            log = (self.folder / "server.log").read_text() if (self.folder / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl {command} failed: {started.stdout}{started.stderr}\n{log[-2000:]}")

    def url(self, ca_file: Path, host: str = "localhost") -> str:
        return f"postgresql://postgres@{host}:{self.port}/postgres?sslmode=verify-full&sslrootcert={ca_file}"


def _server_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as Debian's ``postgres`` user."""
    if os.getuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run the TLS PostgreSQL server as")
    return ["runuser", "-u", "postgres", "--"]


def _give(run_as: list[str], *paths: Path) -> None:
    if run_as:
        user = pwd.getpwnam("postgres")
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    installed = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=600)
    if installed.returncode != 0:
        pytest.skip(f"no PostgreSQL built with OpenSSL here: {installed.stderr.strip()}")
    bindir = Path(installed.stdout.strip().splitlines()[-1])
    run_as = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="rca-tls-postgres-"))  # not under pytest's root-only temp folder
    os.chmod(folder, 0o755)
    _give(run_as, folder)
    ca = TestCA(Path(tempfile.mkdtemp(prefix="rca-tls-ca-")))
    initdb = subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
                             "--auth=trust", "-E", "UTF8"], capture_output=True, text=True, timeout=120)
    assert initdb.returncode == 0, initdb.stderr
    # TLS only: a plain connection from anywhere is rejected
    (folder / "data" / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n")
    with open(folder / "data" / "postgresql.conf", "a") as conf:
        conf.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{folder}'\n")
    server = TlsPostgres(bindir=bindir, folder=folder, port=free_port(), ca=ca, run_as=run_as)
    server.use(ca.issue("postgres-server"))
    try:
        yield server
    finally:
        server.pg_ctl("-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(ca.directory, ignore_errors=True)


async def test_the_store_connects_with_verify_full_and_the_session_is_encrypted(tls_postgres: TlsPostgres) -> None:
    tls_postgres.use(tls_postgres.ca.issue("postgres-good"))
    store = await Store.connect(tls_postgres.url(tls_postgres.ca.cert_file))  # migrations run over TLS
    await store.close()
    connection = await asyncpg.connect(tls_postgres.url(tls_postgres.ca.cert_file))
    try:
        row = await connection.fetchrow("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        migrated = await connection.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await connection.close()
    assert row["ssl"] is True and row["version"].startswith("TLSv1.")
    assert migrated >= 1


async def test_a_plain_connection_is_rejected_by_the_server(tls_postgres: TlsPostgres) -> None:
    tls_postgres.use(tls_postgres.ca.issue("postgres-plain"))
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{tls_postgres.port}/postgres?sslmode=disable")


async def test_a_server_certificate_of_another_ca_is_refused_and_named(tls_postgres: TlsPostgres) -> None:
    tls_postgres.use(tls_postgres.ca.issue("postgres-good-2"))
    other = TestCA(Path(tempfile.mkdtemp(prefix="rca-tls-other-")), name="other-ca")
    with pytest.raises(DatabaseUnavailable) as refused:
        await Store.connect(tls_postgres.url(other.cert_file))
    message = str(refused.value)
    assert message.startswith(f"TLS to PostgreSQL at localhost:{tls_postgres.port} failed: its certificate was refused: ")
    assert "unable to get local issuer certificate" in message
    assert "sslrootcert" in message
    shutil.rmtree(other.directory, ignore_errors=True)


async def test_an_expired_server_certificate_is_refused_and_named(tls_postgres: TlsPostgres) -> None:
    tls_postgres.use(tls_postgres.ca.issue("postgres-expired", expired=True))
    with pytest.raises(DatabaseUnavailable) as refused:
        await Store.connect(tls_postgres.url(tls_postgres.ca.cert_file))
    assert str(refused.value).startswith(
        f"TLS to PostgreSQL at localhost:{tls_postgres.port} failed: its certificate was refused: certificate has expired")


async def test_a_name_the_certificate_does_not_carry_is_refused(tls_postgres: TlsPostgres) -> None:
    tls_postgres.use(tls_postgres.ca.issue("postgres-localhost-only", hosts=("localhost",)))
    with pytest.raises(DatabaseUnavailable, match="TLS to PostgreSQL at 127.0.0.1:.*(IP address mismatch|Hostname mismatch)"):
        await Store.connect(tls_postgres.url(tls_postgres.ca.cert_file, host="127.0.0.1"))
