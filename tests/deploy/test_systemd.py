"""systemd/kafka-tls-proxy.service (+ .env, .sysusers) for a Tailscale host, checked against the
proxy binary and with systemd's own tools (systemd-analyze verify / security, offline)."""

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import REPO, binary, duration_seconds, known_env, known_flags, split_flag

UNIT = REPO / "systemd/kafka-tls-proxy.service"
ENV_FILE = REPO / "systemd/kafka-tls-proxy.env"
SYSUSERS = REPO / "systemd/kafka-tls-proxy.sysusers"
INSTALLED_BIN = "/usr/local/bin/kafka-tls-proxy"


def parse_unit(text):
    """{section: [(key, value), ...]} keeping repeated keys (systemd allows them)."""
    sections, current = {}, None
    text = re.sub(r"\\\n", " ", text)
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{line!r} outside a section"
        current.append((key.strip(), value.strip()))
    return sections


def values(section, key):
    return [v for k, v in section if k == key]


def one(section, key):
    vs = values(section, key)
    assert len(vs) == 1, f"{key}: expected one value, got {vs}"
    return vs[0]


def parse_env(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="module")
def unit():
    return parse_unit(UNIT.read_text())


@pytest.fixture(scope="module")
def env():
    return parse_env(ENV_FILE.read_text())


@pytest.fixture(scope="module")
def exec_start(unit, env):
    """ExecStart words with ${VAR} from the env file substituted (as systemd does)."""
    words = one(unit["Service"], "ExecStart").split()
    used = set()

    def sub(m):
        used.add(m[1])
        assert m[1] in env, f"ExecStart uses ${{{m[1]}}}, which the env file does not define"
        return env[m[1]]

    resolved = [re.sub(r"\$\{(\w+)\}", sub, w) for w in words]
    assert used == {"TAILNET_IP", "TAILNET_NAME"}, used
    return resolved


def test_waits_for_tailscale(unit):
    for key in ("After", "Wants"):
        deps = " ".join(values(unit["Unit"], key)).split()
        assert "tailscaled.service" in deps, f"{key}= lacks tailscaled.service"
        assert "network-online.target" in deps


def test_flags_and_env_exist_in_the_binary(exec_start, env):
    assert exec_start[0] == INSTALLED_BIN
    flags = [split_flag(w)[0] for w in exec_start[1:]]
    assert all(f.startswith("--") for f in flags), exec_start
    assert set(flags) <= known_flags(), f"unknown flags: {set(flags) - known_flags()}"
    ktp = {k for k in env if k.startswith("KTP_")}
    assert ktp <= known_env(), f"env variables the binary does not read: {ktp - known_env()}"
    assert {"KTP_UPSTREAM", "KTP_CLIENT_CERT", "KTP_CLIENT_KEY"} <= ktp


def test_binds_the_tailnet_address_only(exec_start, env):
    args = dict(split_flag(w) for w in exec_start[1:])
    ip = ipaddress.ip_address(args["--bind-address"])
    assert ip in ipaddress.ip_network("100.64.0.0/10"), f"{ip} is not a tailnet (CGNAT) address"
    assert args["--advertised-host"].endswith(".ts.net"), "advertise the MagicDNS name"
    # Off loopback the binary refuses a plaintext listener unless told (WireGuard encrypts here).
    assert "--allow-plaintext-listener" in args and args["--allow-plaintext-listener"] is None
    assert "KTP_BIND_ADDRESS" not in env, "the bind address comes from ExecStart's TAILNET_IP only"
    assert env["KTP_ADMIN_ADDRESS"].startswith("127.0.0.1:"), "admin stays on loopback"


def test_reload_stop_and_restart(unit, env):
    service = unit["Service"]
    reload = one(service, "ExecReload").split()
    assert reload[-2:] == ["-HUP", "$MAINPID"] and reload[0].endswith("kill")
    assert one(service, "KillSignal") == "SIGTERM"
    drain = duration_seconds(env.get("KTP_DRAIN_TIMEOUT", "25s"))
    stop = duration_seconds(one(service, "TimeoutStopSec"))
    assert stop > drain, f"TimeoutStopSec {stop}s must exceed the drain timeout {drain}s"
    assert one(service, "Restart") == "on-failure"
    assert one(service, "EnvironmentFile") == "/etc/kafka-tls-proxy/kafka-tls-proxy.env"


def test_non_root_and_hardened(unit):
    s = unit["Service"]
    assert one(s, "DynamicUser") == "yes"
    assert one(s, "User") not in ("root", "0")
    group = one(s, "SupplementaryGroups")
    assert re.search(rf"^g {re.escape(group)} ", SYSUSERS.read_text(), re.M), "sysusers creates the group"
    for key, want in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute": "yes",
    }.items():
        assert one(s, key) == want, key


def systemd_analyze():
    path = shutil.which("systemd-analyze")
    if not path:
        pytest.fail("systemd-analyze not found: apt-get install systemd (tests/run installs it)")
    return path


@pytest.fixture
def unit_copy(tmp_path):
    """The unit with the binary and env file at paths that exist on this machine."""
    text = UNIT.read_text().replace(INSTALLED_BIN, str(binary()))
    text = text.replace("/etc/kafka-tls-proxy/kafka-tls-proxy.env", str(ENV_FILE))
    path = tmp_path / "kafka-tls-proxy.service"
    path.write_text(text)
    return path


def test_systemd_analyze_verify_is_clean(unit_copy):
    out = subprocess.run(
        [systemd_analyze(), "verify", str(unit_copy)], capture_output=True, text=True, timeout=60
    )
    complaints = [l for l in (out.stdout + out.stderr).splitlines() if "kafka-tls-proxy" in l]
    assert out.returncode == 0 and not complaints, out.stdout + out.stderr


def test_systemd_analyze_security_exposure_is_low(unit_copy):
    out = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(unit_copy)],
        capture_output=True, text=True, timeout=60,
    )
    m = re.search(r"Overall exposure level for .*: ([0-9.]+) (\w+)", out.stdout)
    assert m, out.stdout + out.stderr
    assert float(m[1]) <= 2.0, f"exposure {m[1]} {m[2]}:\n{out.stdout}"


def test_the_binary_accepts_the_units_settings(exec_start, env):
    """The unit's flags plus its env file, with dev certificates and a closed upstream, run
    through `check`: no usage error; the plaintext listener on the tailnet address is accepted
    (without --allow-plaintext-listener it is refused, naming --bind-address)."""
    certs = REPO / "certs-dev"
    run_env = {k: v for k, v in env.items() if k.startswith("KTP_")}
    run_env.update(
        KTP_UPSTREAM="127.0.0.1:1",
        KTP_CLIENT_CERT=str(certs / "service.pem"),
        KTP_CLIENT_KEY=str(certs / "service-encrypted.key"),
        KTP_CLIENT_KEY_PASSPHRASE_FILE=str(certs / "service-encrypted.pass"),
        KTP_CONNECT_TIMEOUT="2s",
        PATH="/usr/bin:/bin",
    )
    args = [str(binary()), *exec_start[1:], "check"]
    out = subprocess.run(args, env=run_env, capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode != 2 and "unexpected argument" not in text, text
    assert "127.0.0.1:1" in text, f"check did not get to the upstream:\n{text}"
    assert "key" in text and "matches" in text, text

    strict = [a for a in args if a != "--allow-plaintext-listener"]
    out = subprocess.run(strict, env=run_env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--bind-address" in out.stdout + out.stderr, out


def syscall_groups():
    """{'@group': {syscalls and @subgroups}} from `systemd-analyze syscall-filter`."""
    out = subprocess.run(
        [systemd_analyze(), "syscall-filter", "--no-pager"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    groups, current = {}, None
    for line in out.stdout.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), set())
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.add(line.strip())
    return groups


def expand(name, groups):
    if not name.startswith("@"):
        return {name}
    out = set()
    for member in groups[name]:
        out |= expand(member, groups)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hardening_allows_what_the_binary_does(unit, tmp_path):
    """The proxy runs under strace through start, /healthz, /readyz, /metrics, a SIGHUP reload
    and a SIGTERM drain. Every system call it makes must pass the unit's SystemCallFilter=, every
    socket family RestrictAddressFamilies=, and no mapping may be writable and executable
    (MemoryDenyWriteExecute=): otherwise systemd would kill or break it in production."""
    strace = shutil.which("strace")
    if not strace:
        pytest.fail("strace not found: apt-get install strace (tests/run installs it)")
    certs = REPO / "certs-dev"
    port, base, admin = free_port(), 40000 + free_port() % 20000, free_port()
    trace = tmp_path / "trace"
    proc = subprocess.Popen(
        [strace, "-f", "-qq", "-o", str(trace), str(binary()),
         "--upstream=127.0.0.1:1", f"--upstream-ca={certs / 'ca.pem'}",
         f"--client-cert={certs / 'service.pem'}", f"--client-key={certs / 'service-encrypted.key'}",
         f"--client-key-passphrase-file={certs / 'service-encrypted.pass'}",
         "--bind-address=127.0.0.1", f"--bootstrap-port={port}", f"--broker-port-base={base}",
         f"--admin-address=127.0.0.1:{admin}", "--log-format=json", "--drain-timeout=5s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=2) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        deadline = time.time() + 30
        while True:
            try:
                assert get("/healthz") == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.time() < deadline and proc.poll() is None, "proxy did not start"
                time.sleep(0.2)
        assert get("/readyz") == 503, "upstream 127.0.0.1:1 is closed: not ready"
        assert get("/metrics") == 200
        pid = int(trace.read_text().split(None, 1)[0])  # the traced proxy (first line's pid)
        os.kill(pid, signal.SIGHUP)
        time.sleep(1)
        assert get("/healthz") == 200, "alive after SIGHUP"
        os.kill(pid, signal.SIGTERM)
        rc = proc.wait(timeout=30)
        assert rc == 0, f"exit {rc} after SIGTERM:\n{proc.stderr.read()}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = trace.read_text()

    used = set(re.findall(r"^\d+\s+([a-z0-9_]+)\(", text, re.M))
    used |= set(re.findall(r"<\.\.\. ([a-z0-9_]+) resumed>", text))
    assert {"bind", "listen", "connect", "epoll_wait"} <= used, sorted(used)
    groups = syscall_groups()
    allowed, denied = set(), set()
    filters = values(unit["Service"], "SystemCallFilter")
    assert filters, "no SystemCallFilter="
    for f in filters:
        names = f.lstrip("~").split()
        target = denied if f.startswith("~") else allowed
        for n in names:
            target |= expand(n, groups)
    forbidden = sorted(s for s in used if s not in allowed or s in denied)
    assert not forbidden, f"system calls the unit's SystemCallFilter= would refuse: {forbidden}"

    families = set(re.findall(r"\bsocket(?:pair)?\((AF_[A-Z0-9]+)", text))
    restricted = set(one(unit["Service"], "RestrictAddressFamilies").split())
    assert families and families <= restricted, f"socket families {families} vs {restricted}"

    if one(unit["Service"], "MemoryDenyWriteExecute") == "yes":
        wx = [l for l in text.splitlines()
              if re.search(r"\b(mmap|mprotect|pkey_mprotect)\(", l) and "PROT_WRITE" in l and "PROT_EXEC" in l]
        assert not wx, f"writable+executable mappings (MemoryDenyWriteExecute=yes would fail them): {wx[:3]}"
