"""The lexicon of well-known failure messages: which words point at which kind of fault.

Each kind belongs to a category an on-call engineer routes by (OOM -> application, pool
exhaustion -> database, DNS/timeouts -> network, CPU/disk -> infrastructure, failed logins
-> security, third-party 503 -> external). Adding a kind is adding one entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.schemas import Category


@dataclass(frozen=True)
class FaultKind:
    name: str
    category: Category
    cause: str
    pattern: re.Pattern[str]
    #: does a service named in such a message cause it? A DNS failure names what was looked up, not a culprit
    blames_named: bool = True
    #: words with which a *user* of a shared resource reports its failure (a pool timing out, a lookup
    #: failing, a stack trace): the logger suffers it. The same kind logged without them is the
    #: resource's owner speaking (the database refusing clients, the DNS server's own errors).
    client_words: re.Pattern[str] | None = None

    def is_client_report(self, text: str) -> bool:
        """Does ``text`` report this fault as seen by a user of the failing resource?"""
        return self.client_words is not None and self.client_words.search(text) is not None


def _kind(name: str, category: Category, cause: str, *words: str, blames_named: bool = True,
          client_words: tuple[str, ...] = ()) -> FaultKind:
    client = re.compile("|".join(client_words), re.IGNORECASE) if client_words else None
    return FaultKind(name, category, cause, re.compile("|".join(words), re.IGNORECASE), blames_named, client)


#: a stack trace or exception is an application's view of a failure, never the server's own log
_APPLICATION_VIEW = (r"Exception", r"Traceback", r"Caused by", r"\bat [\w$.]+\(")

#: how servers record refusing a login: OpenSSH/PAM, web frameworks, identity providers, databases
#: ("password authentication failed for user", "Access denied for user"), FTP and mail daemons
_LOGIN_FAILURE = (
    r"failed password", r"invalid user", r"authentication fail(?:ure|ed)", r"login fail(?:ure|ed)", r"failed login",
    r"invalid credentials", r"bad credentials", r"(?:invalid|incorrect|wrong|bad) password", r"account (?:is )?locked",
    r"brute.?force", r"too many authentication failures", r"maximum authentication attempts", r"break-in attempt",
)
#: how servers record refusing a request's credentials or access: HTTP 401/403 words, token and
#: signature checks (JWT, OAuth introspection, API keys), audit and policy denials
_ACCESS_REFUSED = (
    r"unauthori[sz]ed", r"forbidden", r"access denied",
    # a policy's verdict (audit logs, WAFs, firewalls), not a header value such as x-frame-options: "DENY"
    r"\b(?:action|verdict|decision|effect)[\"']?\s*[:=]\s*[\"']?deny\b",
    r"(?:invalid|expired|revoked|forged|malformed|unknown) (?:access |bearer |auth |api |id )?(?:token|jwt|api.?key|signature|credentials?|key id)",
    r"(?:token|jwt|signature|api.?key|credentials?)(?: is| was| has)? (?:invalid|expired|revoked|rejected|not valid)",
    r"jwt verification failed", r"invalid_grant", r"invalid_client", r"signature .* invalid",
)
#: the same refusals, as one pattern (the security signal's test of a line)
AUTH_FAILURE = re.compile("|".join((*_LOGIN_FAILURE, *_ACCESS_REFUSED)), re.IGNORECASE)
#: HTTP statuses that refuse a request's credentials or access
AUTH_REFUSED_STATUSES = {401, 403}
#: the status of an access-log line: after the quoted request line (NCSA/nginx, Envoy, uvicorn),
#: a ``status``/``status_code`` field (JSON, logfmt) or a ``| 401 |`` column (gin, echo)
_HTTP_STATUS = re.compile(
    r"\"(?:GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS|CONNECT|TRACE) [^\"]*\" (\d{3})\b"
    r"|\b(?:status|status_?code|statusCode|response_?code|http_?status)[\"']?\s*[:=]\s*[\"']?(\d{3})\b"
    r"|\|\s+(\d{3})\s+\|"
)


def http_status(text: str) -> int | None:
    """The HTTP status an access-log line records, or None when the line is not one."""
    m = _HTTP_STATUS.search(text)
    if m is None:
        return None
    code = int(next(g for g in m.groups() if g))
    return code if 100 <= code <= 599 else None


FAULT_KINDS: list[FaultKind] = [
    _kind("memory_leak", Category.application, "memory exhaustion (leak) ending in out-of-memory errors",
          r"OutOfMemory", r"heap space", r"OOMKill", r"GC overhead", r"memory leak", r"exit code 137", r"Full GC"),
    _kind("db_connection_exhaustion", Category.database, "database connections exhausted",
          r"too many clients", r"max_connections", r"connection is not available", r"HikariPool", r"pool (is )?exhausted",
          r"SQLTransientConnection", r"too many connections", r"remaining connection slots",
          client_words=(r"HikariPool", r"connection is not available", r"pool (is )?exhausted", r"SQLTransientConnection",
                        r"JDBC", r"timeout waiting for (a )?connection", *_APPLICATION_VIEW)),
    _kind("database_error", Category.database, "database errors (locks, deadlocks, failing queries)",
          r"deadlock", r"lock wait timeout", r"SQLException", r"relation .* does not exist", r"replication lag",
          r"could not serialize access", r"database .* (is|was) (down|unavailable)",
          # PostgreSQL's log_lock_waits and lock_timeout, MySQL's InnoDB lock wait
          r"still waiting for \w*Lock", r"canceling statement due to lock timeout",
          client_words=(r"SQLState", r"SQL Error", r"JDBC", r"hibernate", r"sqlalchemy", r"ActiveRecord", r"psycopg",
                        r"pgx", r"driver", *_APPLICATION_VIEW)),
    _kind("dns_failure", Category.network, "DNS resolution failures",
          r"UnknownHost", r"no such host", r"name resolution", r"ENOTFOUND", r"EAI_AGAIN", r"NXDOMAIN", r"SERVFAIL",
          r"lookup \S+ on \S+:53", r"plugin/errors", blames_named=False,
          client_words=(r"UnknownHost", r"no such host", r"name resolution", r"ENOTFOUND", r"EAI_AGAIN", r"getaddrinfo",
                        r"lookup \S+ on \S+:53", *_APPLICATION_VIEW)),
    _kind("network_delay", Category.network, "network latency or timeouts between services",
          r"i/o timeout", r"connect(ion)? timed out", r"read timed out", r"SocketTimeout", r"deadline exceeded",
          r"context deadline", r"ETIMEDOUT", r"504 Gateway Timeout"),
    _kind("network_error", Category.network, "network connectivity failures",
          r"connection refused", r"connection reset", r"ECONNREFUSED", r"ECONNRESET", r"no route to host",
          r"network is unreachable", r"EHOSTUNREACH", r"broken pipe", r"TLS handshake"),
    _kind("cpu_contention", Category.infrastructure, "CPU saturation or throttling",
          r"CPU throttl", r"cpu_throttled", r"throttling", r"load average", r"thread pool saturated", r"lagging",
          r"starved", r"CPU (usage )?(at|above) \d+"),
    _kind("disk_full", Category.infrastructure, "disk full or node disk pressure",
          r"No space left", r"DiskPressure", r"disk full", r"ephemeral-storage", r"ENOSPC", r"filesystem .* full"),
    _kind("memory_pressure", Category.infrastructure, "node memory exhausted by a workload (OOM killer, evictions)",
          r"MemoryPressure", r"low on resource: memory", r"invoked oom-killer", r"Out of memory: Kill",
          r"memory\.available"),
    _kind("node_failure", Category.infrastructure, "node or kubelet failure",
          r"NodeNotReady", r"node .* not ready", r"kubelet", r"evict"),
    _kind("credential_stuffing", Category.security, "burst of failed logins (credential stuffing / brute force)",
          *_LOGIN_FAILURE),
    _kind("security_event", Category.security, "unauthorized access attempts",
          *_ACCESS_REFUSED, r"permission denied", r"suspicious"),
    _kind("external_dependency", Category.external, "a third-party dependency is failing",
          r"provider", r"third.?party", r"https?://(?![^/\s]*(\.svc|\.local|localhost|127\.0\.0\.1))[^/\s]+\.[a-z]{2,}",
          r"circuit breaker", r"vendor", r"Service Unavailable", r"api\.[a-z0-9-]+\.(com|io|net)"),
    _kind("code_exception", Category.application, "application exceptions",
          r"Exception", r"Traceback", r"panic:", r"NullPointer", r"segfault", r"IllegalState", r"TypeError",
          r"KeyError", r"500 Internal Server Error", r"unhandled"),
]

# Kinds that come from measurements rather than words.
FAULT_KINDS_MEASURED: list[FaultKind] = [
    _kind("latency", Category.application, "slow responses", r"(?!)"),
    # from the order of events: a node's network agent spoke just before other services' network errors rose
    _kind("network_agent", Category.network, "the node's network agent (CNI) breaking connections through its node", r"(?!)"),
]
KINDS_BY_NAME = {k.name: k for k in [*FAULT_KINDS, *FAULT_KINDS_MEASURED]}


def kinds_in(text: str) -> list[str]:
    """Names of the fault kinds whose words occur in ``text``, in lexicon order."""
    return [k.name for k in FAULT_KINDS if k.pattern.search(text)]
