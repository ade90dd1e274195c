"""A real OpenLDAP directory for tests (Debian's ``slapd``): a facility's people, a group, a
service account. Test-only; ``make setup-test`` installs slapd (the ``ldap`` target).

:class:`LdapServer` writes its own ``slapd.conf`` and database into a temporary folder, loads the
entries with ``slapadd`` (offline), and runs ``slapd`` as the current user on a free port of
127.0.0.1. Nothing system-wide is read or written besides Debian's schema files and modules.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hubtools import free_port

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
SUFFIX = "dc=facility,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICES = f"ou=services,{SUFFIX}"


@dataclass
class LdapUser:
    uid: str
    password: str
    groups: tuple[str, ...] = ()

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE}"


def ssha(password: str) -> str:
    """``{SSHA}`` userPassword value (what ``slappasswd`` writes): the server never sees the clear text."""
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


@dataclass
class TestCertificates:
    """A test CA and a server certificate it signed for 127.0.0.1 / localhost (PEM files)."""

    __test__ = False  # not a pytest test class

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, folder: Path) -> "TestCertificates":
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        ca, ca_key = folder / "ca.pem", folder / "ca.key"
        cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
        ext = folder / "san.cnf"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

        def openssl(*args):
            subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=speckle test CA", "-keyout", ca_key, "-out", ca)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                "-keyout", key, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                "-days", "2", "-extfile", ext, "-out", cert)
        return cls(ca=ca, cert=cert, key=key)


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


class LdapServer:
    """``slapd`` on ``ldap://127.0.0.1:<port>`` holding ``users`` and a service account.

    Parameters
    ----------
    workdir : Path
        An empty folder for the configuration, the database and the log.
    users : list of LdapUser
        People under ``ou=people``; each group named in their ``groups`` becomes a
        ``groupOfNames`` under ``ou=groups`` listing its members' DNs.
    tls : TestCertificates, optional
        Offer StartTLS with this server certificate (for 127.0.0.1 and localhost).
    """

    def __init__(self, workdir: Path, users: list[LdapUser], tls: "TestCertificates | None" = None):
        self.workdir = Path(workdir)
        self.users = list(users)
        self.tls = tls
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}/"
        self.service_dn = f"cn=hub-reader,{SERVICES}"
        self.service_password = secrets.token_urlsafe(12)
        self.proc: subprocess.Popen | None = None

    # ------------------------------------------------------------------ files
    def _config(self) -> str:
        w = self.workdir
        schemas = "\n".join(f"include {SCHEMA_DIR / n}.schema" for n in ("core", "cosine", "nis", "inetorgperson"))
        tls = "" if self.tls is None else (f"TLSCACertificateFile {self.tls.ca}\n"
                                           f"TLSCertificateFile {self.tls.cert}\n"
                                           f"TLSCertificateKeyFile {self.tls.key}\n")
        return f"""{schemas}
{tls}pidfile {w / 'slapd.pid'}
argsfile {w / 'slapd.args'}
modulepath {MODULE_DIR}
moduleload back_mdb
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "cn=manager,{SUFFIX}"
rootpw {ssha(secrets.token_urlsafe(12))}
directory {w / 'db'}
access to attrs=userPassword by anonymous auth by self write by * none
access to * by users read by * none
"""

    def _ldif(self) -> str:
        entries = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: facility\no: Facility",
            *(f"dn: {ou}\nobjectClass: organizationalUnit\nou: {ou.split(',')[0][3:]}"
              for ou in (PEOPLE, GROUPS, SERVICES)),
            f"dn: {self.service_dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
            f"cn: hub-reader\nuserPassword: {ssha(self.service_password)}",
        ]
        for uid_number, user in enumerate(self.users, start=20001):
            entries.append(
                f"dn: {user.dn}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: {user.uid}\n"
                f"cn: {user.uid.title()}\nsn: {user.uid.title()}\nuidNumber: {uid_number}\ngidNumber: 20000\n"
                f"homeDirectory: /home/{user.uid}\nuserPassword: {ssha(user.password)}")
        for name in sorted({g for u in self.users for g in u.groups}):
            members = "\n".join(f"member: {u.dn}" for u in self.users if name in u.groups)
            entries.append(f"dn: {group_dn(name)}\nobjectClass: groupOfNames\ncn: {name}\n{members}")
        return "\n\n".join(entries) + "\n"

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 15) -> None:
        for program in (SLAPD, SLAPADD):
            if not os.access(program, os.X_OK):
                raise RuntimeError(f"{program} is missing: run `make setup-test` "
                                   "(as root: apt-get install slapd ldap-utils)")
        (self.workdir / "db").mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "slapd.conf"
        conf.write_text(self._config())
        ldif = self.workdir / "entries.ldif"
        ldif.write_text(self._ldif())
        done = subprocess.run([SLAPADD, "-f", str(conf), "-l", str(ldif)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"slapadd failed ({done.returncode}): {done.stderr.strip()}")
        log = open(self.workdir / "slapd.log", "ab")
        # -d: stay in the foreground (a child of the test, easy to stop); stats: one line per operation
        self.proc = subprocess.Popen([SLAPD, "-f", str(conf), "-h", self.url, "-d", "stats"],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"slapd did not answer within {timeout} s:\n{self.log_tail()}")

    def answers(self) -> bool:
        """True when the service account can bind (the server is up and holds the entries)."""
        import ldap3

        try:
            conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=self.port, connect_timeout=1),
                                    user=self.service_dn, password=self.service_password, auto_bind=True)
        except ldap3.core.exceptions.LDAPException:
            return False
        conn.unbind()
        return True

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join((self.workdir / "slapd.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.workdir / "db", ignore_errors=True)

    def __enter__(self) -> "LdapServer":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
