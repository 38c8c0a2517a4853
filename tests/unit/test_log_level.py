"""LOG_LEVEL: validated by name, and applied to the app's own loggers in the process that reads it."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from pipelines.log_setup import APP_PACKAGES, configure_logging
from pipelines.settings import Settings


@pytest.mark.parametrize("given, level", [("debug", "DEBUG"), (" Warn ", "WARNING"), ("ERROR", "ERROR")])
def test_log_level_is_read_in_any_case(monkeypatch: pytest.MonkeyPatch, given: str, level: str) -> None:
    monkeypatch.setenv("LOG_LEVEL", given)
    assert Settings().log_level == level


def test_an_unknown_log_level_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError, match="LOG_LEVEL='LOUD': expected one of DEBUG, INFO"):
        Settings()


def test_configure_logging_sets_the_app_loggers_and_leaves_others(caplog: pytest.LogCaptureFixture) -> None:
    before = {p: logging.getLogger(p).level for p in APP_PACKAGES}
    third_party = logging.getLogger("httpx").level
    try:
        configure_logging("DEBUG")
        assert all(logging.getLogger(p).getEffectiveLevel() == logging.DEBUG for p in APP_PACKAGES)
        assert logging.getLogger("httpx").level == third_party
        logging.getLogger("pipelines.store").debug("connected")
        assert "connected" in caplog.text
        configure_logging("ERROR")
        assert not logging.getLogger("deployments.ingress").isEnabledFor(logging.WARNING)
    finally:
        for package, level in before.items():
            logging.getLogger(package).setLevel(level)
