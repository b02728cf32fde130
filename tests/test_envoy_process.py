"""The one rule every real-Envoy test follows: skip only where Envoy cannot run,
and never skip when CI requires Envoy."""

from __future__ import annotations

import pytest

import tests.envoy_process as ep


def test_cannot_run_skips_with_the_reason(monkeypatch):
    monkeypatch.setattr(ep, "unusable_reason", lambda: "no envoy binary")
    monkeypatch.delenv("MESHAUTHZ_REQUIRE_ENVOY", raising=False)
    with pytest.raises(pytest.skip.Exception, match="x skipped: no envoy binary"):
        ep.require_envoy("x")


def test_cannot_run_fails_when_ci_requires_envoy(monkeypatch):
    monkeypatch.setattr(ep, "unusable_reason", lambda: "no envoy binary")
    monkeypatch.setenv("MESHAUTHZ_REQUIRE_ENVOY", "1")
    with pytest.raises(pytest.fail.Exception, match="required"):
        ep.require_envoy("x")


def test_a_process_that_never_gets_ready_is_stopped(tmp_path):
    exe = ep.require_envoy("envoy process handling")
    proc = ep.EnvoyProcess(exe, tmp_path)
    # An admin port nothing will answer on: start must give up in bounded time and stop Envoy.
    boot = {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": ep.free_port()}}
        }
    }
    with pytest.raises(TimeoutError):
        proc.start(boot, ep.free_port(), timeout=1.0)
    assert proc.proc is None
