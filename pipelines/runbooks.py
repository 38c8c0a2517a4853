"""Runbooks: the remediation a team writes for its own systems, tried before the built-in playbooks.

A runbook is one YAML file in ``RCA_RUNBOOKS_DIR`` (default ``configs/runbooks`` when it exists)::

    name: database connections exhausted       # optional, defaults to the file name
    match:                                      # every condition given must hold; a list is any of
      category: database
      fault_type: [db_connection_exhaustion, database_error]
      service: "*-db"                           # glob on the service the top hypothesis blames
      text: "(?i)too many clients|remaining connection slots"   # regex searched in its evidence
    replace_playbook: false                     # true: the built-in playbook's steps are left out
    steps:
      - action: Count connections on {service} by state
        command: kubectl exec -n {namespace} {pod} -- psql -c "SELECT state, count(*) ..."
        expected_outcome: Connections at max_connections
        risk_level: low                         # low, medium or high

``{service}``, ``{namespace}`` and ``{pod}`` are filled from the incident (``{{`` and ``}}``
write a literal brace). Runbooks load once at start; a file that does not validate stops the
start with ``file:line: field: what is wrong``. A command is text shown to a person, never run.
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.reasoning.signals.lexicon import KINDS_BY_NAME
from pipelines.schemas import Category, Incident, RemediationStep, RiskLevel

#: where runbooks are read from when ``RCA_RUNBOOKS_DIR`` is unset (relative to the working directory)
DEFAULT_DIR = Path("configs/runbooks")
PLACEHOLDERS = ("service", "namespace", "pod")
#: fault types a hypothesis can name (``unknown`` when no kind fits)
FAULT_TYPES = frozenset(KINDS_BY_NAME) | {"unknown"}
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class IncidentFacts:
    """What a runbook matches on and fills in: the top hypothesis and where the alert fired."""

    category: Category | None = None
    fault_type: str | None = None
    service: str | None = None
    namespace: str | None = None
    pod: str | None = None
    texts: tuple[str, ...] = ()

    @classmethod
    def of_incident(cls, incident: Incident) -> IncidentFacts | None:
        """The facts of a stored incident's top hypothesis; None when it was never analyzed."""
        if incident.analysis is None or not incident.analysis.hypotheses:
            return None
        top = incident.analysis.hypotheses[0]
        labels = incident.alert.labels
        pod = labels.get("pod") if top.service == incident.alert.service else None  # the alert's pod is not the culprit's
        return cls(top.category, top.fault_type, top.service, labels.get("namespace"), pod, tuple(top.evidence))

    def values(self) -> dict[str, str]:
        return {"service": self.service or "<service>", "namespace": self.namespace or "default", "pod": self.pod or "<pod>"}


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _check_placeholders(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{exc}; write {{{{ and }}}} for a literal brace") from None
    unknown = [name for name in fields if name not in PLACEHOLDERS]
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}}; use {{service}}, {{namespace}} or {{pod}}"
            " (write {{{{ and }}}} for a literal brace)")
    return text


class RunbookStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str = Field(min_length=1)
    command: str | None = Field(default=None, description="shown to the on-call engineer, never run")
    expected_outcome: str = Field(min_length=1)
    risk_level: RiskLevel

    placeholders = field_validator("action", "command", "expected_outcome")(_check_placeholders)


class RunbookMatch(BaseModel):
    """Every condition given must hold; within a condition, any of its values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: list[Category] = Field(default_factory=list)
    fault_type: list[str] = Field(default_factory=list)
    service: list[str] = Field(default_factory=list, description="globs on the blamed service (fnmatch)")
    text: list[str] = Field(default_factory=list, description="regexes searched in the top hypothesis's evidence")

    listed = field_validator("category", "fault_type", "service", "text", mode="before")(_listed)

    @field_validator("fault_type")
    @classmethod
    def _known_fault_types(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in FAULT_TYPES:
                raise ValueError(f"unknown fault type {value!r}; one of {', '.join(sorted(FAULT_TYPES))}")
        return values

    @field_validator("text")
    @classmethod
    def _regexes(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
        return values

    @model_validator(mode="after")
    def _not_everything(self) -> RunbookMatch:
        if not (self.category or self.fault_type or self.service or self.text):
            raise ValueError("give at least one of category, fault_type, service, text (an empty match would take every incident)")
        return self

    def matches(self, facts: IncidentFacts) -> bool:
        if self.category and facts.category not in self.category:
            return False
        if self.fault_type and facts.fault_type not in self.fault_type:
            return False
        if self.service and not (facts.service and any(fnmatch.fnmatchcase(facts.service, g) for g in self.service)):
            return False
        if self.text and not any(re.search(p, t) for p in self.text for t in facts.texts):
            return False
        return True


class Runbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", description="defaults to the file name")
    description: str | None = None
    match: RunbookMatch
    replace_playbook: bool = Field(default=False, description="leave the built-in playbook's steps out")
    steps: list[RunbookStep] = Field(min_length=1)
    file: str = Field(default="", description="the file it was read from (set by the loader)")

    @property
    def source(self) -> str:
        """How an analysis names this runbook as the source of a step."""
        return f"runbook:{self.file or self.name}"

    def remediation(self, facts: IncidentFacts) -> list[RemediationStep]:
        """This runbook's steps with the incident filled in (numbered from 1; the caller renumbers)."""
        return filled_steps(self.steps, facts.values(), self.source)


class StepText(Protocol):
    action: str
    command: str | None
    expected_outcome: str
    risk_level: RiskLevel


def filled_steps(steps: Iterable[StepText], values: dict[str, str], source: str) -> list[RemediationStep]:
    """Steps with their placeholders filled in, numbered from 1, naming ``source``."""
    return [
        RemediationStep(
            step=i,
            action=s.action.format(**values),
            command=s.command.format(**values) if s.command else None,
            expected_outcome=s.expected_outcome.format(**values),
            risk_level=s.risk_level,
            source=source,
        )
        for i, s in enumerate(steps, start=1)
    ]


class Runbooks(BaseModel):
    """The loaded runbooks, in file-name order."""

    model_config = ConfigDict(frozen=True)

    items: list[Runbook] = Field(default_factory=list)

    def matching(self, facts: IncidentFacts) -> list[Runbook]:
        return [r for r in self.items if r.match.matches(facts)]


@dataclass(frozen=True)
class RunbookProblem:
    """One thing wrong in a runbook file, located for the person who wrote it."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"


class RunbookError(ValueError):
    """Runbooks that do not validate; the message lists every problem as ``file:line: field: message``."""

    def __init__(self, problems: list[RunbookProblem]) -> None:
        self.problems = problems
        super().__init__("invalid runbook" + ("s" if len(problems) > 1 else "") + ":\n  " + "\n  ".join(map(str, problems)))


def _lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int], dupes: list[tuple[tuple[Any, ...], int]]) -> None:
    """Map each YAML path (keys and list indexes) to its 1-based line; note duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value if isinstance(key, yaml.ScalarNode) else f"<{key.tag}>")
            if sub in out:
                dupes.append((sub, key.start_mark.line + 1))
            out[sub] = key.start_mark.line + 1
            _lines(value, sub, out, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _lines(item, (*path, i), out, dupes)


def _line_of(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    """The line of the longest prefix of ``loc`` the file has (a missing field: its parent's line)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def parse_runbook(text: str, file: str) -> tuple[Runbook | None, list[RunbookProblem]]:
    """One runbook from YAML text, or the problems that keep it from being one."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [RunbookProblem(file, mark.line + 1 if mark else 1, "", f"not valid YAML: {problem}")]
    if not isinstance(data, dict):
        return None, [RunbookProblem(file, 1, "", "a runbook file holds one mapping (name, match, steps)")]
    lines: dict[tuple[Any, ...], int] = {}
    dupes: list[tuple[tuple[Any, ...], int]] = []
    _lines(node, (), lines, dupes)
    problems = [RunbookProblem(file, line, ".".join(map(str, path)), "given twice") for path, line in dupes]
    try:
        runbook = Runbook.model_validate({**data, "name": data.get("name") or Path(file).stem, "file": file})
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error.get("loc", ()))
            message = error.get("msg", "invalid").removeprefix("Value error, ")
            given = error.get("input")
            if error.get("type") == "enum" and isinstance(given, (str, int, float)):
                message += f" (got {given!r})"
            problems.append(RunbookProblem(file, _line_of(loc, lines), ".".join(map(str, loc)), message))
        return None, problems
    return (None if problems else runbook), problems


def runbook_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in SUFFIXES)


def check_runbooks(directory: Path) -> tuple[list[Runbook], list[RunbookProblem]]:
    """Every runbook of a directory that validates, and every problem of those that do not."""
    if not directory.is_dir():
        return [], [RunbookProblem(str(directory), None, "", "no such directory")]
    runbooks: list[Runbook] = []
    problems: list[RunbookProblem] = []
    for path in runbook_files(directory):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(RunbookProblem(path.name, None, "", f"cannot read: {exc}"))
            continue
        runbook, found = parse_runbook(text, path.name)
        problems.extend(found)
        if runbook is not None:
            runbooks.append(runbook)
    return runbooks, problems


def runbooks_dir(configured: Path | None) -> Path | None:
    """``RCA_RUNBOOKS_DIR`` when set, else ``configs/runbooks`` when it exists, else None (no runbooks)."""
    if configured is not None:
        return configured
    return DEFAULT_DIR if DEFAULT_DIR.is_dir() else None


def load_runbooks(configured: Path | None) -> Runbooks:
    """The runbooks to use, validated; raises ``RunbookError`` naming every problem (file:line: field)."""
    directory = runbooks_dir(configured)
    if directory is None:
        return Runbooks()
    runbooks, problems = check_runbooks(directory)
    if problems:
        if not directory.is_dir():
            problems = [RunbookProblem(str(directory), None, "RCA_RUNBOOKS_DIR", "no such directory")]
        raise RunbookError(problems)
    return Runbooks(items=runbooks)



def past_matches(runbooks: list[Runbook], incidents: Iterable[Incident]) -> dict[str, list[Incident]]:
    """For each runbook (by file), the stored incidents whose analysis it would have matched."""
    matched: dict[str, list[Incident]] = {r.file: [] for r in runbooks}
    for incident in incidents:
        facts = IncidentFacts.of_incident(incident)
        if facts is not None:
            for runbook in runbooks:
                if runbook.match.matches(facts):
                    matched[runbook.file].append(incident)
    return matched
