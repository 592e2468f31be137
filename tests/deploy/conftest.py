"""Shared helpers for the deployment tests (tests/deploy): the proxy binary and its --help."""

import functools
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def binary() -> Path:
    """$KTP_BIN, else the newest of target/{release,debug}/kafka-tls-proxy."""
    env = os.environ.get("KTP_BIN")
    if env:
        return Path(env)
    found = [
        p
        for p in (REPO / "target/release/kafka-tls-proxy", REPO / "target/debug/kafka-tls-proxy")
        if p.exists()
    ]
    if not found:
        pytest.fail("no kafka-tls-proxy binary: run `cargo build` (tests/run does) or set KTP_BIN")
    return max(found, key=lambda p: p.stat().st_mtime)


@functools.lru_cache
def help_text() -> str:
    out = subprocess.run([str(binary()), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"kafka-tls-proxy --help failed: {out.stderr}"
    return out.stdout


@functools.lru_cache
def known_flags() -> frozenset:
    """Every long option of the proxy (from --help)."""
    return frozenset(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9][a-z0-9-]*)", help_text(), re.M))


@functools.lru_cache
def known_env() -> frozenset:
    """Every KTP_* environment variable the proxy reads (from --help's [env: ...])."""
    return frozenset(re.findall(r"\[env: (KTP_[A-Z0-9_]+)=", help_text()))


@functools.lru_cache
def subcommands() -> frozenset:
    section = help_text().split("Commands:", 1)[1].split("Options:", 1)[0]
    return frozenset(re.findall(r"^  ([a-z][a-z-]*)\s", section, re.M))


def duration_seconds(text: str) -> float:
    """'25s', '250ms', '2m', '30' (seconds) -> seconds; systemd's '1min 5s' too."""
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h)?", text.strip())
    assert parts, f"not a duration: {text!r}"
    for number, unit in parts:
        total += float(number) * {"ms": 0.001, "": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]
    return total


def split_flag(arg: str):
    """'--flag=value' -> ('--flag', 'value'); '--flag' -> ('--flag', None)."""
    if "=" in arg:
        flag, value = arg.split("=", 1)
        return flag, value
    return arg, None


@pytest.fixture(scope="session")
def proxy_help():
    return help_text()
