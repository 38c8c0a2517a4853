"""Hosts that log lines name: a database endpoint, a third party, a peer inside the cluster.

One reading of ``host:port``, URLs and connection strings for every signal that asks whom a
line names (the dependency signal, the log signal's callees).
"""

from __future__ import annotations

import ipaddress
import re

#: default ports of databases and data stores (PostgreSQL, MySQL/MariaDB, MongoDB, Redis,
#: Oracle, SQL Server, Cassandra, CockroachDB)
DATABASE_PORTS = {"5432", "3306", "27017", "6379", "1521", "1433", "9042", "26257"}
#: public top-level domains a provider's host name ends with (generic ones only: country codes
#: such as .py, .rs, .sh collide with file names in log lines)
PUBLIC_TLDS = {"com", "net", "org", "io", "co", "cloud", "dev", "app", "ai", "biz", "info"}
#: suffixes of names that stay inside a cluster or a private network
INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".local", ".internal", ".localdomain", ".lan", ".home.arpa", ".consul")
#: names DNS server software and Kubernetes give the cluster DNS
DNS_SERVER_NAMES = ("coredns", "kube-dns", "node-local-dns", "nodelocaldns", "dnsmasq", "unbound")
#: names a machine calls itself
_SELF = {"localhost", "localhost.localdomain", "ip6-localhost"}
#: a source file and line, as stack traces and loggers print them (``ApplicationFilterChain.java:205``,
#: ``jwt.lua:118``, ``views.py:42``): spelled like ``host:port``, never one
_SOURCE_FILE = re.compile(
    r"\.(?:java|kt|kts|scala|groovy|clj|py|pyx|go|js|mjs|cjs|jsx|ts|tsx|rb|php|lua|cs|fs|vb|c|cc|cpp|cxx|h|hpp|"
    r"rs|swift|m|mm|erl|ex|exs|hs|ml|pl|pm|sh|dart|r|jl|zig|nim|cr|v|sql)$", re.IGNORECASE)
#: Java packages spelled like host names (``com.stripe.net``)
_PACKAGE_PREFIXES = ("com.", "org.", "net.", "io.", "java.", "javax.", "jdk.", "sun.")

_URL = re.compile(r"\b(?:https?|wss?|grpcs?)://(?:[^@/\s\"']+@)?([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])")
_DB_URL = re.compile(
    r"\b(?:jdbc:)?(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|sqlserver|cockroachdb)://"
    r"(?:[^@/\s\"']+@)?([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])", re.IGNORECASE)
_HOST_PORT = re.compile(r"(?<![\w.:/-])([A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*):(\d{2,5})\b")
_DSN_HOST = re.compile(r"\bhost=([A-Za-z][A-Za-z0-9.-]*[A-Za-z0-9])")
#: the AWS SDKs name the service they call: Go v2 "operation error S3: PutObject", Java
#: "(Service: Amazon S3; Status Code: 503" / "(Service: S3, Status Code: 503"
_CLOUD_SDK = re.compile(r"operation error ([A-Za-z0-9]+):|\(Service: (?:Amazon |AWS )?([A-Za-z0-9 ]+?)[;,]")
DATABASE_KINDS = {"db_connection_exhaustion", "database_error"}


def is_external_host(host: str) -> bool:
    """A host name outside the cluster: dotted, a public TLD, not an address or an internal suffix."""
    host = host.lower().rstrip(".")
    if "." not in host or host.startswith(_PACKAGE_PREFIXES) or host.endswith(INTERNAL_SUFFIXES):
        return False
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    return host.rsplit(".", 1)[1] in PUBLIC_TLDS


def workload_of(host: str, known: set[str]) -> str:
    """The name a cluster-internal host gives its workload: its first label without a StatefulSet ordinal.

    ``orders-db.prod.svc.cluster.local`` -> ``orders-db``; ``orders-db-0.orders-db`` -> ``orders-db``.
    """
    first = host.lower().split(".", 1)[0]
    return first if first in known else re.sub(r"-\d+$", "", first)


#: URLs that are not what the logger called: a referer after an access log's request and status,
#: a link a message points the reader to ("see https://...", "status at https://...")
_NOT_CALLED = re.compile(
    r"HTTP/[\d.]+\" \d{3} \S+ \"[^\"]*\"|\breferr?er: \"[^\"]*\"|"
    r"\b(?:see|visit|refer to|documentation|docs|more info(?:rmation)?|status(?: page)? at)\W{1,3}https?://\S+",
    re.IGNORECASE)


def external_provider(text: str) -> set[str]:
    """Third parties ``text`` names: hosts outside the cluster (in a URL or as ``host:port``) and cloud SDK services.

A bare host name is not enough: servers print their own (``server: shop.example.com``)."""
    text = _NOT_CALLED.sub(" ", text)
    found = {h.lower() for h in _URL.findall(text) if is_external_host(h)}
    found |= {h.lower() for h, _ in _HOST_PORT.findall(text) if is_external_host(h)}
    for go, java in _CLOUD_SDK.findall(text):
        found.add(f"aws {(go or java).strip().lower()}")
    return found


def database_hosts(text: str, kinds: set[str]) -> set[str]:
    """Database endpoints ``text`` names: a connection URL, ``host:<database port>``, a DSN's ``host=``."""
    hosts = set(_DB_URL.findall(text))
    hosts |= {h for h, port in _HOST_PORT.findall(text) if port in DATABASE_PORTS}
    if kinds & DATABASE_KINDS:
        hosts |= set(_DSN_HOST.findall(text))
    return {h for h in hosts if not is_external_host(h) and h.lower() != "localhost"}


def in_cluster_hosts(text: str) -> set[str]:
    """Peers inside the cluster that ``text`` names as ``host:port``: not a third party, not a
    database (the dependency signal's), not the machine itself. ``inventory:8080`` -> ``inventory``."""
    text = _NOT_CALLED.sub(" ", text)
    return {h.lower() for h, port in _HOST_PORT.findall(text)
            if port not in DATABASE_PORTS and not is_external_host(h) and h.lower() not in _SELF and not _SOURCE_FILE.search(h)}
