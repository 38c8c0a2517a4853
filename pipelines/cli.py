"""The ``rca`` command: serve the API, analyze files, run the demo and the evaluations.

Every command that analyzes goes through the same Serve application as production
(``pipelines.runtime``). Progress goes to stderr; ``--json`` prints one JSON object as the
last line of stdout, so scripts can read it.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.schemas import Alert, AlertmanagerAlert, AlertmanagerWebhook, Analysis, AnalyzeRequest, describe_validation_error
from pipelines.settings import Settings

app = typer.Typer(help="Incident root-cause analyzer on Ray Serve.", no_args_is_help=True, add_completion=False)
eval_app = typer.Typer(help="Score the analyzer on public benchmark data.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
keys_app = typer.Typer(help="API keys (stored hashed in PostgreSQL): create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
runbooks_app = typer.Typer(help="Runbooks: the team's own remediation, tried before the built-in playbooks.", no_args_is_help=True)
app.add_typer(runbooks_app, name="runbooks")
db_app = typer.Typer(help="Incident history in PostgreSQL: archival of old resolved incidents.", no_args_is_help=True)
app.add_typer(db_app, name="db")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

#: output that is not a terminal (a log, CI) gets this width, so tables keep service names whole
FILE_WIDTH = 132
out = Console()
if not out.is_terminal:
    out.width = max(out.width, FILE_WIDTH)
err = Console(stderr=True, soft_wrap=True)


class CliError(Exception):
    """A user error: printed as one line naming what was wrong, exit code 2."""


def main() -> None:
    from pipelines.runbooks import RunbookError

    try:
        app()
    except (CliError, RunbookError) as exc:
        err.print(f"[bold red]error:[/bold red] {exc}")
        sys.exit(2)


def _settings(**overrides: Any) -> Settings:
    from pipelines.log_setup import configure_logging

    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise CliError(f"configuration: {describe_validation_error(exc)}") from exc
    configure_logging(settings.log_level)
    return settings


@contextmanager
def _status(message: str, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr with a changing message; a no-op when quiet."""
    if quiet:
        yield lambda _: None
        return
    with err.status(message) as status:
        yield lambda text: status.update(text)


# ---------------------------------------------------------------- serve


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port of the API")] = 8000,
    dashboard: Annotated[bool, typer.Option(help="start Ray's dashboard on :8265")] = True,
    metrics_port: Annotated[int, typer.Option(help="Ray's metrics export port, scraped by Prometheus")] = 8080,
) -> None:
    """Start the database (embedded unless RCA_DATABASE_URL), Ray and the Serve app; block until Ctrl-C."""
    from pipelines import runtime
    from pipelines.auth import auth_enabled

    settings = _settings(host=host, port=port)
    secured = auth_enabled(settings)
    if not secured and host not in LOOPBACK_HOSTS:
        raise CliError(
            f"--host {host}: refusing to listen on a non-local interface without authentication. Set "
            "RCA_AUTH_JWT_SECRET (or RCA_AUTH_JWT_PUBLIC_KEY_FILE / RCA_AUTH_JWKS_FILE), or RCA_AUTH_REQUIRED=true "
            "and create API keys with `rca keys create`; see the README's Security section."
        )
    from pipelines.notify.channels import build_channels
    from pipelines.runbooks import load_runbooks
    from pipelines.tls import check_api_certificate

    load_runbooks(settings.runbooks_dir)  # a bad runbook stops the start before anything runs
    try:
        check_api_certificate(settings)  # an expired or mismatched API certificate too
        build_channels(settings)  # and a notification channel that cannot work (unreadable *_FILE, no HMAC key)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    with _status("starting PostgreSQL, Ray and the Serve application…") as update:
        local = runtime.start(settings, http=True, dashboard=dashboard, metrics_port=metrics_port)
        update("ready")
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    out.print(f"[bold green]rca is serving[/bold green] ({'LLM ' + settings.openai_model if settings.llm_configured else 'evidence reasoner'})")
    api = f"{settings.api_scheme}://{shown_host}:{port}"
    out.print(f"  API:        {api}/")
    out.print(f"  API docs:   {api}/docs")
    out.print(f"  Health:     {api}/health")
    out.print(f"  Metrics:    {api}/metrics  (Prometheus: scrape 127.0.0.1:{metrics_port})")
    if settings.tls_cert_file:
        clients = "client certificates required" if settings.tls_client_ca_file else "no client certificates asked"
        out.print(f"  TLS:        {settings.tls_cert_file} ({clients})")
    if dashboard:
        out.print("  Ray dashboard: http://127.0.0.1:8265  (Ray 2.60 asks for the token in ~/.ray/auth_token;"
                  " RAY_AUTH_MODE=disabled turns that off for local use only)")
    out.print(f"  Database:   {'embedded in ' + str(settings.data_dir / 'postgres') if not settings.database_url else 'RCA_DATABASE_URL'}")
    if secured:
        out.print("  Auth:       on (bearer JWT or API key; roles viewer, operator, admin)")
    else:
        out.print(f"  [yellow]Auth:       off - listening on {host} only; every local caller is admin.[/yellow]"
                  " Set RCA_AUTH_JWT_SECRET or RCA_AUTH_REQUIRED=true to turn it on.")
    out.print("Press Ctrl-C to stop.")
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        with _status("stopping…"):
            runtime.stop()
        del local


# ---------------------------------------------------------------- keys and tokens


def _cli_actor() -> Any:
    import getpass

    from pipelines.audit import AuditContext

    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    return AuditContext(actor=f"cli:{user}", actor_kind="cli")


def _with_store(work: Callable[[Any], Any]) -> Any:
    """Run ``work(store)`` against the configured (or embedded) database."""
    import asyncio

    from pipelines.database import DatabaseUnavailable, resolve_database_url, stop_embedded
    from pipelines.store import Store

    settings = _settings()
    try:
        url = resolve_database_url(settings.database_url, settings.data_dir)
    except DatabaseUnavailable as exc:
        raise CliError(str(exc)) from exc

    async def run() -> Any:
        try:
            store = await Store.connect(url, max_size=2)
        except Exception as exc:  # noqa: BLE001 - asyncpg's connection errors are varied
            raise CliError(f"database: cannot connect ({exc})") from exc
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    finally:
        if not settings.database_url:
            stop_embedded()


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
    name: Annotated[str, typer.Option(help="what the key is for, e.g. alertmanager")] = "cli",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an API key; its value is printed once (only its hash is stored)."""
    from pipelines.auth import ApiKeyCreate, NewApiKey, generate_api_key

    try:
        request = ApiKeyCreate(name=name, role=role)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise CliError(describe_validation_error(exc)) from exc
    value, key_id, secret_hash = generate_api_key()
    key = _with_store(lambda store: store.create_api_key(key_id, request.name, request.role, secret_hash, _cli_actor()))
    created = NewApiKey(**key.model_dump(), api_key=value)
    if as_json:
        print(created.model_dump_json())
        return
    out.print(f"API key [bold]{key_id}[/bold] ({created.role.value}, {created.name}) created. Store it now; it is not shown again:")
    print(value)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key id (rca_<key id>_...)")]) -> None:
    """Revoke an API key: from now on it is refused."""
    from pipelines.store import ApiKeyNotFound

    async def revoke(store: Any) -> Any:
        try:
            return await store.revoke_api_key(key_id, _cli_actor())
        except ApiKeyNotFound as exc:
            raise CliError(str(exc)) from exc

    key = _with_store(revoke)
    out.print(f"API key {key.key_id} ({key.name}) revoked at {key.revoked_at:%Y-%m-%d %H:%M:%S %Z}.")


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List API keys (never their values)."""
    keys = _with_store(lambda store: store.list_api_keys())
    if as_json:
        print(json.dumps([k.model_dump(mode="json") for k in keys]))
        return
    table = Table("key id", "name", "role", "created", "by", "revoked")
    for k in keys:
        table.add_row(k.key_id, k.name, k.role.value, f"{k.created_at:%Y-%m-%d %H:%M}", k.created_by,
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-")
    out.print(table)


@db_app.command("archive")
def db_archive(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count what would be archived")] = False,
    retention_days: Annotated[int | None, typer.Option(help="override RCA_RETENTION_DAYS (default 90)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Move incidents resolved more than RCA_RETENTION_DAYS ago to the archive (the list skips them
    unless include_archived=true; their detail still answers). The audit log is never archived."""
    days = _settings(retention_days=retention_days).retention_days

    async def archive(store: Any) -> Any:
        with _status("archiving", quiet=as_json) as update:
            return await store.archive(days, dry_run=dry_run, audit=_cli_actor(), progress=lambda p: update(
                f"{'would archive' if p.dry_run else 'archived'} {p.moved if not p.dry_run else p.due:,}"
                f" of {p.due:,} incidents resolved more than {days} days ago"))

    result = _with_store(archive)
    if as_json:
        print(json.dumps({"dry_run": result.dry_run, "due": result.due, "moved": result.moved, "retention_days": days}))
    elif result.dry_run:
        out.print(f"{result.due:,} incidents resolved more than {days} days ago would be archived (dry run).")
    else:
        out.print(f"{result.moved:,} incidents resolved more than {days} days ago archived.")


@app.command()
def token(
    subject: Annotated[str, typer.Option(help="who the token is for (the sub claim)")] = "dev",
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "operator",
    ttl: Annotated[int, typer.Option(help="seconds until it expires")] = 3600,
) -> None:
    """Print an HS256 JWT for local development (needs RCA_AUTH_JWT_SECRET)."""
    from pipelines.auth import Role, issue_token

    if role not in Role.__members__:
        raise CliError(f"--role {role!r}: choose viewer, operator or admin")
    if ttl <= 0:
        raise CliError("--ttl: must be a positive number of seconds")
    try:
        print(issue_token(_settings(), subject, Role(role), ttl))
    except ValueError as exc:
        raise CliError(str(exc)) from exc


# ---------------------------------------------------------------- analyze / demo


def _read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise CliError(f"{what} {path}: no such file")
    if path.is_dir():
        raise CliError(f"{what} {path}: is a folder, not a JSON file")
    raw = path.read_bytes()
    if not raw.strip():
        raise CliError(f"{what} {path}: the file is empty")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CliError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} {path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc


def load_alert(path: Path) -> Alert:
    """An alert file in any shape a user holds one in (the first alert where it holds several).

    Our alert; an ``/analyze`` body with ``alert``; Alertmanager's webhook; one Alertmanager alert
    (a webhook entry, or what ``amtool alert query -o json`` and ``/api/v2/alerts`` list);
    Prometheus's ``/api/v1/alerts`` answer (``activeAt`` is when it started).
    """
    data = _read_json(path, "--alert")
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "alerts" in data["data"]:
        data = data["data"]["alerts"]  # Prometheus: {"status": "success", "data": {"alerts": [...]}}
    if isinstance(data, list):
        if not data:
            raise CliError(f"--alert {path}: the list holds no alert")
        data = data[0]
    try:
        if isinstance(data, dict) and "alerts" in data:
            valid, rejected = AlertmanagerWebhook.model_validate(data).valid_alerts()
            if rejected and rejected[0].index == 0:
                raise CliError(f"--alert {path}: {rejected[0].error}")
            return valid[0].to_alert()
        if isinstance(data, dict) and isinstance(data.get("alert"), dict):
            data = data["alert"]
        if isinstance(data, dict) and "name" not in data and isinstance(data.get("labels"), dict) and (
                "startsAt" in data or "activeAt" in data):
            return AlertmanagerAlert.model_validate(_as_alertmanager_alert(data)).to_alert()
        return Alert.model_validate(data)
    except ValidationError as exc:
        raise CliError(f"--alert {path}: {describe_validation_error(exc)}") from exc


def _as_alertmanager_alert(data: dict) -> dict:
    """One alert as Alertmanager's webhook writes it: API v2's ``status: {state}`` and Prometheus's
    ``state`` / ``activeAt`` say the same things in other words."""
    status = data.get("status", data.get("state"))
    if isinstance(status, dict):  # API v2: {"state": "active" | "suppressed" | "unprocessed", ...}
        status = status.get("state")
    out = dict(data, status="resolved" if status == "resolved" else "firing")
    if "startsAt" not in out:
        out["startsAt"] = data["activeAt"]
    return out


def _read_log_files(paths: list[Path], max_bytes: int) -> tuple[list[str | dict], list[str]]:
    """The files' lines, and notes on what was left out or how a file was read.

    A file whose lines name no service, under a name that names one (``orders.log``), is read as
    that service's: its lines go on parsed, as events that carry it.
    """
    from pipelines.sources.files import events_of, names_services, read_tail, service_of_file

    lines: list[str | dict] = []
    notes: list[str] = []
    for path in paths:
        if not path.exists():
            raise CliError(f"--logs {path}: no such file")
        if path.is_dir():
            raise CliError(f"--logs {path}: is a folder; give log files")
        read = read_tail(path, max_bytes)
        if read.error:
            notes.append(read.error)
            continue
        notes.extend(read.notes(path, max_bytes))
        service = service_of_file(path)
        if service and not names_services(read.lines):
            lines.extend(e.model_dump(mode="json") for e in events_of(read.lines, service, path.name))
            notes.append(f"{path.name}: its lines name no service; read as {service}'s, from the file name")
            continue
        lines.extend(read.lines)
    return lines, notes


def _run_analysis(body: dict | AnalyzeRequest, settings: Settings, update: Callable[[str], None]) -> Analysis:
    from pipelines import runtime

    update("starting PostgreSQL, Ray and the Serve application…")
    with runtime.running(settings, http=False) as local:
        update("analyzing through the Serve pipeline…")
        result = local.ingress.analyze.remote(body).result()
        update("stopping…")
    return Analysis.model_validate(result)


def _print(analysis: Analysis, as_json: bool, title: str) -> None:
    if as_json:
        print(analysis.model_dump_json())
    else:
        from pipelines.report import render_analysis

        out.print(render_analysis(analysis, title=title))


@app.command()
def analyze(
    alert: Annotated[Path, typer.Option(help="alert JSON: our alert, an /analyze body, or an Alertmanager webhook")],
    logs: Annotated[list[Path] | None, typer.Option(help="log file (repeat for more); .gz is read too")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the analysis as one JSON object")] = False,
    context_window: Annotated[int, typer.Option(help="seconds of context before the alert")] = 300,
) -> None:
    """Analyze an alert with log files, through the same Serve pipeline as the API."""
    settings = _settings()
    parsed = load_alert(alert)
    lines, notes = _read_log_files(list(logs or []), settings.max_body_bytes)
    if logs and not lines:
        raise CliError("--logs: no readable log lines in " + ", ".join(str(p) for p in logs) + (f" ({'; '.join(notes)})" if notes else ""))
    for note in notes:
        err.print(f"[yellow]warning:[/yellow] {note}")
    body = {"alert": parsed.model_dump(mode="json"), "context_window": context_window, "logs": lines}
    with _status("starting…", quiet=False) as update:
        analysis = _run_analysis(body, settings, update)
    _print(analysis, as_json, f"{parsed.name} on {parsed.service or 'unknown service'}")


@app.command()
def demo(
    scenario: Annotated[str, typer.Option(help="which fault to simulate (see `rca scenarios`)")] = "db_pool_exhaustion",
    seed: Annotated[int, typer.Option(help="random seed: same seed, same incident")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="print the analysis as one JSON object")] = False,
) -> None:
    """Simulate a realistic incident, analyze it with the Serve pipeline, store it, print the analysis."""
    from pipelines.simulate import SCENARIOS, simulate

    if scenario not in SCENARIOS:
        raise CliError(f"--scenario {scenario!r}: unknown; choose one of {', '.join(SCENARIOS)}")
    incident = simulate(scenario, seed=seed)
    err.print(f"Simulated [bold]{scenario}[/bold]: {incident.description}; {len(incident.logs)} log lines, "
              f"{len(incident.metrics)} metric series, alert {incident.alert.name} on {incident.alert.service}.")
    with _status("starting…") as update:
        analysis = _run_analysis(incident.request_body(), _settings(), update)
    _print(analysis, as_json, f"Demo: {incident.alert.name} on {incident.alert.service}")


@app.command()
def scenarios() -> None:
    """List the incidents the simulator can generate."""
    from pipelines.simulate import SCENARIOS

    table = Table("scenario", "category", "what happens")
    for s in SCENARIOS.values():
        table.add_row(s.name, s.category.value, s.description)
    out.print(table)


# ---------------------------------------------------------------- evaluation


def _dataset(path: Path) -> Path:
    if not path.exists():
        raise CliError(f"{path}: no such folder (the benchmark data lives in ../shared/datasets)")
    if not path.is_dir():
        raise CliError(f"{path}: not a folder")
    return path


def _emit(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        table = Table("figure", "value")
        for key, value in result.items():
            if not isinstance(value, (list, dict)):
                table.add_row(key, str(value))
        out.print(table)


def _evaluate(run: Callable[..., dict], path: Path) -> dict:
    try:
        with _status(f"evaluating {path}…") as update:
            return run(_dataset(path), progress=update)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc


@eval_app.command("loghub")
def eval_loghub(
    path: Annotated[Path, typer.Argument(help="folder with <S>/<S>_2k.log_structured.csv")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    leave_one_out: Annotated[bool, typer.Option(
        "--leave-one-out", help="choose each measured constant on the other systems, score the held-out one")] = False,
) -> None:
    """Grouping accuracy of template mining on Loghub-2k."""
    from pipelines.evaluation.loghub import evaluate_loghub, evaluate_loghub_loo

    if leave_one_out:
        result = _evaluate(evaluate_loghub_loo, path)
        if not as_json:
            table = Table("held-out system", "constants chosen on the others", "grouping accuracy")
            for system, fold in result["folds"].items():
                table.add_row(system, ", ".join(f"{k}={v}" for k, v in fold["chosen"].items()), f"{fold['ga']:.3f}")
            out.print(table)
    else:
        result = _evaluate(evaluate_loghub, path)
        if not as_json:
            table = Table("system", "grouping accuracy")
            for system, ga in result["systems"].items():
                table.add_row(system, f"{ga:.3f}")
            out.print(table)
    _emit(result, as_json)


@eval_app.command("hdfs")
def eval_hdfs(
    path: Annotated[Path, typer.Argument(help="folder with session_train.jsonl and session_test.jsonl")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Unsupervised anomaly detection on HDFS sessions."""
    from pipelines.evaluation.hdfs import evaluate_hdfs

    _emit(_evaluate(evaluate_hdfs, path), as_json)


def _replay(contexts: list[tuple[str, Callable[[], Any]]], settings: Settings, label: str, quiet: bool) -> list[tuple[Any, Analysis, float]]:
    """Analyze each ``(name, build_context)`` through the Serve application, as ``POST /analyze`` does.

    Returns ``(context, analysis, seconds)``; the reader's degraded reasons (skipped rows, ignored
    files, short history) go with the request, so the stored analysis records them too.
    """
    from pipelines import runtime
    from pipelines.evaluation.nezha import NezhaDatasetError

    results = []
    with runtime.running(settings, http=False) as local:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=quiet) as progress:
            task = progress.add_task(label, total=len(contexts))
            for name, build in contexts:
                progress.update(task, description=f"{label} {name}")
                try:
                    context = build()
                except (FileNotFoundError, NezhaDatasetError) as exc:
                    raise CliError(str(exc)) from exc
                body = AnalyzeRequest(alert=context.alert, context_window=settings.context_window_seconds,
                                      logs=context.window.logs, metrics=context.window.metrics,
                                      spans=context.window.spans, baseline=context.baseline,
                                      degraded_reasons=context.degraded_reasons)
                started = time.perf_counter()
                analysis = Analysis.model_validate(local.ingress.analyze.remote(body).result())
                elapsed = time.perf_counter() - started
                results.append((context, analysis, elapsed))
                progress.advance(task)
    return results


def _eval_settings() -> Settings:
    # no history: an evaluation's figures never depend on feedback stored in the database it uses
    return _settings(data_dir=Path(tempfile.mkdtemp(prefix="rca-eval-")), recall_history=False)


@eval_app.command("nezha")
def eval_nezha(
    path: Annotated[Path, typer.Argument(help="folder in the Nezha layout (rca_data/, construct_data/)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int | None, typer.Option(help="only the first N cases")] = None,
    alert_delay: Annotated[float, typer.Option(help="seconds after the injection the alert fires (see --alert-at)")] = 120.0,
    alert_at: Annotated[str, typer.Option(help="delay: every alert at injection + --alert-delay (a sweep compares like "
                                          "with like); rules: when configs/prometheus-rules.yaml would fire on the "
                                          "front end, else at injection + --alert-delay")] = "delay",
    leave_out: Annotated[list[str] | None, typer.Option("--without", help="leave this telemetry out of every replay "
                                                        "(logs, metrics or spans; repeat for more): an ablation")] = None,
) -> None:
    """Replay Nezha fault cases as production runs (the alert late, its ContextWindow only) through the
    Serve pipeline and score root-cause localization with 95% intervals."""
    from pipelines.evaluation.intervals import describe
    from pipelines.evaluation.nezha import NezhaDatasetError, load_cases, score_cases, telemetry_kinds, without

    try:
        left_out = telemetry_kinds(leave_out or [])
    except ValueError as exc:
        raise CliError(f"--without: {exc}") from exc

    if alert_at not in ("delay", "rules"):
        raise CliError(f"--alert-at {alert_at!r}: choose delay or rules")
    if alert_delay < 0:
        raise CliError(f"--alert-delay {alert_delay:g}: must be >= 0 seconds")
    try:
        cases = load_cases(_dataset(path))[:limit]
        plans = {case.case_id: case.alert_plan(alert_at, alert_delay) for case in cases}  # type: ignore[arg-type]
    except (FileNotFoundError, NezhaDatasetError) as exc:
        raise CliError(str(exc)) from exc
    if not cases:
        raise CliError(f"{path}: no fault cases found (expected rca_data/<date>/<date>-fault_list.json)")
    settings = _eval_settings()
    window = (settings.context_window_seconds, settings.context_wait_seconds)
    replayed = _replay([(case.case_id, lambda case=case: without(case.context(alert_at, alert_delay, *window), left_out))
                        for case in cases], settings, "case", as_json)
    scored = score_cases([(case, analysis, seconds) for case, (_, analysis, seconds) in zip(cases, replayed)], plans)
    scored = {"alert_at": alert_at, "alert_delay_seconds": alert_delay, "left_out": left_out,
              "context_window": {"before_seconds": window[0], "after_seconds": window[1]}, **scored}
    if as_json:
        print(json.dumps(scored))
        return
    table = Table("case", "truth", "fault", "alert", "predicted (top 3)", "rank", "category", "s")
    for r in scored["rows"]:
        alert = r["alert"]
        table.add_row(r["case"], r["truth_service"], r["fault_type"], f"{alert['alert']} +{alert['after_injection_seconds']:g}s",
                      "\n".join(s or "-" for s in r["predicted"]), str(r["rank"] or "-"),
                      {True: "✓ ", False: "✗ ", None: "? "}[r["category_ok"]] + r["category"], f"{r['seconds']:.1f}")
    out.print(table)
    summary = Table("fault type", "cases", "AS@1", "AS@3", "category", "fault type")
    for kind, figures in [*scored["by_fault_type"].items(), ("all", scored)]:
        summary.add_row(kind, str(figures["cases"]), *(describe(figures[k]) for k in
                        ("as_at_1", "as_at_3", "category_accuracy", "fault_type_accuracy")))
    out.print(summary)
    out.print(f"alert at {alert_at}, delay {alert_delay:g}s; {scored['alerts']['fired_by_rules']} fired by rules, "
              f"rules would fire within the case's data in {scored['alerts']['rules_would_fire_within_case_data']}; "
              f"AS@5: {scored['as_at_5_note']}; p50 {scored['p50_seconds']}s, p95 {scored['p95_seconds']}s per case")


@eval_app.command("fault-free")
def eval_fault_free(
    path: Annotated[Path | None, typer.Argument(help="a Nezha dataset whose construct_data minutes give fault-free windows")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    simulator: Annotated[bool, typer.Option(help="also the simulator's scenarios with their fault switched off")] = True,
) -> None:
    """Replay windows with no fault through the Serve pipeline: the share where a root cause is
    named with confidence >= 0.5 (target <= 5%), with a 95% interval."""
    from pipelines.evaluation.fault_free import nezha_windows, score_fault_free, simulator_windows
    from pipelines.evaluation.intervals import describe
    from pipelines.evaluation.nezha import NezhaDatasetError

    settings = _eval_settings()
    window = (settings.context_window_seconds, settings.context_wait_seconds)
    try:
        windows = nezha_windows(_dataset(path), *window) if path is not None else []
    except (FileNotFoundError, NezhaDatasetError) as exc:
        raise CliError(str(exc)) from exc
    windows += simulator_windows(before_seconds=window[0], after_seconds=window[1]) if simulator else []
    if not windows:
        raise CliError("no fault-free windows: give a Nezha dataset or keep --simulator")
    replayed = _replay([(w.name, w.build) for w in windows], settings, "window", as_json)
    scored = score_fault_free([(w, analysis, seconds) for w, (_, analysis, seconds) in zip(windows, replayed)])
    if as_json:
        print(json.dumps(scored))
        return
    table = Table("window", "source", "top hypothesis", "confidence", "category")
    for r in scored["rows"]:
        table.add_row(r["window"], r["source"], r["top_service"] or "-", f"{r['top_confidence'] or 0:.2f}" + (" ✗" if r["confident"] else ""),
                      r["category"])
    out.print(table)
    for source, figures in scored["by_source"].items():
        out.print(f"{source}: confident root cause in {describe(figures['confident_share'])}")
    out.print(f"all: confident root cause in {describe(scored['confident_share'])}; target <= {scored['target_share']:.0%}")


# ---------------------------------------------------------------- runbooks


@runbooks_app.command("check")
def runbooks_check(
    directory: Annotated[Path | None, typer.Argument(help="runbook folder (default: RCA_RUNBOOKS_DIR, else configs/runbooks)")] = None,
    limit: Annotated[int, typer.Option(help="how many of the latest stored incidents to match against")] = 1000,
    steps: Annotated[bool, typer.Option("--steps", help="show each runbook's steps (commands are shown, never run)")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Validate runbooks and show which past incidents each would have matched; exit 2 when one is invalid."""
    from pipelines.runbooks import check_runbooks, past_matches, runbooks_dir

    folder = directory or runbooks_dir(_settings().runbooks_dir)
    if folder is None:
        raise CliError("no runbook folder: give DIR, set RCA_RUNBOOKS_DIR, or create configs/runbooks")
    runbooks, problems = check_runbooks(folder)

    async def latest(store: Any) -> list[Any]:
        incidents: list[Any] = []
        page = 1
        while len(incidents) < limit:
            listed = await store.list_incidents(page=page, page_size=min(200, limit - len(incidents)))
            incidents.extend(listed.items)
            if not listed.items or len(incidents) >= listed.total:
                break
            page += 1
        return incidents

    matched: dict[str, list[Any]] | None = None
    database = "ok"
    if runbooks:
        try:
            matched = past_matches(runbooks, _with_store(latest))
        except CliError as exc:  # validation still counts without a database
            database = f"no database reachable, past incidents not matched ({exc})"
    if as_json:
        print(json.dumps({
            "directory": str(folder),
            "problems": [str(p) for p in problems],
            "database": database,
            "runbooks": [
                {"file": r.file, "name": r.name, "steps": [s.model_dump(mode="json") for s in r.steps],
                 "matched_incidents": None if matched is None else [i.id for i in matched[r.file]]}
                for r in runbooks
            ],
        }))
    else:
        table = Table("file", "name", "matches on", "steps", "past incidents matched")
        for r in runbooks:
            conditions = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in r.match.model_dump(mode="json").items() if v)
            if matched is None:
                past = "-"
            else:
                hits = matched[r.file]
                past = f"{len(hits)}" + (": " + ", ".join(f"{i.id[:8]} {i.service or '-'}" for i in hits[:3]) if hits else "")
                past += " …" if len(hits) > 3 else ""
            table.add_row(r.file, r.name, conditions, str(len(r.steps)), past)
        out.print(table)
        if steps:
            for r in runbooks:
                out.print(f"[bold]{r.file}[/bold] ({'replaces' if r.replace_playbook else 'before'} the built-in playbook)")
                for n, s in enumerate(r.steps, start=1):
                    out.print(f"  {n}. [{s.risk_level.value}] {s.action}", highlight=False, markup=False)
                    if s.command:
                        out.print(f"     $ {s.command}", highlight=False, markup=False)
        if database != "ok":
            err.print(f"[yellow]{database}[/yellow]", markup=True, highlight=False)
        for problem in problems:
            err.print(f"[bold red]invalid:[/bold red] {problem}", highlight=False)
        out.print(f"{len(runbooks)} valid, {len(problems)} problem{'s' if len(problems) != 1 else ''} in {folder}")
    if problems:
        raise typer.Exit(2)


# ---------------------------------------------------------------- feedback and similar incidents (over the API)


def _call_api(method: str, path: str, *, body: dict | None = None, params: dict | None = None) -> Any:
    """Call the running API (RCA_API_URL, credential RCA_API_TOKEN); a refusal is a CliError with its detail."""
    import httpx

    from pipelines.tls import describe_tls_error, http_verify

    settings = _settings()
    headers = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"} if settings.api_token else {}
    try:
        with httpx.Client(base_url=settings.api_url, headers=headers, timeout=60, verify=http_verify(settings)) as client:
            answer = client.request(method, path, json=body, params=params)
    except ValueError as exc:  # RCA_CA_FILE unreadable
        raise CliError(str(exc)) from exc
    except httpx.HTTPError as exc:
        reason = describe_tls_error("the API", settings.api_url, exc) or f"{type(exc).__name__}: {exc}"
        raise CliError(f"API at {settings.api_url} unreachable ({reason}); set RCA_API_URL") from exc
    if answer.is_success:
        return answer.json()
    try:
        detail = answer.json().get("detail", answer.text)
    except ValueError:
        detail = answer.text[:300]
    hint = " (set RCA_API_TOKEN to a token or API key)" if answer.status_code in (401, 403) else ""
    raise CliError(f"{method} {path}: {answer.status_code} {detail}{hint}")


@app.command()
def feedback(
    incident_id: Annotated[str, typer.Argument(help="the incident's id")],
    rank: Annotated[int | None, typer.Option(help="the rank of the hypothesis that was right (1..3)")] = None,
    cause: Annotated[str | None, typer.Option(help="the real cause's category, when no hypothesis was right")] = None,
    service: Annotated[str | None, typer.Option(help="the real cause's service (with --cause)")] = None,
    notes: Annotated[str, typer.Option(help="how it was resolved")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tell the analyzer which hypothesis was right, or the real cause (operator role, through the API)."""
    if (rank is None) == (cause is None):
        raise CliError("give --rank N, or --cause CATEGORY with --service S")
    if cause is not None and not service:
        raise CliError("--cause needs --service: the service the real cause was in")
    if rank is not None and service:
        raise CliError("--service goes with --cause, not with --rank")
    body: dict[str, Any] = {"notes": notes, **({"rank": rank} if rank is not None else {"category": cause, "service": service})}
    given = _call_api("POST", f"/api/incidents/{incident_id}/feedback", body=body)
    if as_json:
        print(json.dumps(given))
        return
    which = f"hypothesis {given['confirmed_rank']}" if given["confirmed_rank"] else "named by no hypothesis"
    out.print(f"Feedback recorded on incident {given['incident_id']}: {given['service'] or 'no single service'} "
              f"({given['category']}), {which}.", highlight=False, markup=False)


@app.command()
def similar(
    incident_id: Annotated[str, typer.Argument(help="the incident's id")],
    limit: Annotated[int, typer.Option(help="how many past incidents (1..50)")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Past incidents most like this one, with their confirmed cause and resolution notes (through the API)."""
    found = _call_api("GET", f"/api/incidents/{incident_id}/similar", params={"limit": limit})
    if as_json:
        print(json.dumps(found))
        return
    table = Table("incident", "alert", "started", "similarity", "confirmed cause", "resolved by")
    for s in found:
        confirmed = s["feedback"]
        table.add_row(s["incident_id"], f"{s['alert_name']} on {s['service'] or '-'}", s["started_at"][:16],
                      f"{s['similarity']:.2f}",
                      f"{confirmed['service'] or '-'} ({confirmed['category']})" if confirmed else "not confirmed",
                      (confirmed or {}).get("notes") or "-")
    out.print(table)
    out.print(f"{len(found)} similar past incident{'s' if len(found) != 1 else ''}")


if __name__ == "__main__":
    main()
