"""nomad/kafka-tls-proxy.nomad.hcl, parsed with a real HCL2 parser (python-hcl2) and checked
against the proxy binary: its flags, ports, signals and timeouts.

The job's args use HCL variables (var.x, with defaults) and Nomad runtime variables
(NOMAD_PORT_<label>, NOMAD_IP_<label>, NOMAD_SECRETS_DIR); `resolve` substitutes them the way
Nomad would on a client whose host network `loopback` is 127.0.0.1.
"""

import re
import subprocess

import hcl2
import pytest

from conftest import REPO, binary, duration_seconds, known_flags, split_flag

JOB_FILE = REPO / "nomad/kafka-tls-proxy.nomad.hcl"
LOOPBACK = "127.0.0.1"
SECRETS_DIR = "/secrets"  # NOMAD_SECRETS_DIR inside a docker task


def unquote(v):
    """python-hcl2 8.x keeps the quotes of string literals; strip them (recursively)."""
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    if isinstance(v, list):
        return [unquote(x) for x in v]
    if isinstance(v, dict):
        return {unquote(k): unquote(x) for k, x in v.items()}
    return v


def blocks(parent, kind):
    """Labelled blocks of `kind` in `parent` as {label: body}."""
    out = {}
    for entry in parent.get(kind, []):
        for label, body in entry.items():
            out[label] = body
    return out


def only(parent, kind):
    items = parent.get(kind, [])
    assert len(items) == 1, f"expected exactly one {kind} block, found {len(items)}"
    return items[0]


@pytest.fixture(scope="module")
def doc():
    with open(JOB_FILE) as f:
        return unquote(hcl2.load(f))


@pytest.fixture(scope="module")
def variables(doc):
    """Variable defaults (a variable without a default gets a placeholder)."""
    out = {}
    for name, body in blocks(doc, "variable").items():
        out[name] = body.get("default", f"<{name}>")
    return out


@pytest.fixture(scope="module")
def job(doc):
    jobs = blocks(doc, "job")
    assert list(jobs) == ["kafka-tls-proxy"], jobs.keys()
    return jobs["kafka-tls-proxy"]


@pytest.fixture(scope="module")
def group(job):
    groups = blocks(job, "group")
    assert len(groups) == 1, "one group: the proxy"
    return next(iter(groups.values()))


@pytest.fixture(scope="module")
def task(group):
    tasks = blocks(group, "task")
    assert len(tasks) == 1, "one task: the proxy"
    return next(iter(tasks.values()))


def eval_expr(expr, variables, extra=None):
    """Evaluates the small HCL expressions the job uses: var.x, port.value, a + b, range()."""
    expr = expr.strip()
    if expr.startswith("${") and expr.endswith("}") and expr.count("${") == 1:
        expr = expr[2:-1].strip()
    env = dict(extra or {})
    m = re.fullmatch(r"range\((.+),(.+)\)", expr)
    if m:
        return list(range(int(eval_expr(m[1], variables, env)), int(eval_expr(m[2], variables, env))))
    if "+" in expr:
        return sum(eval_expr(p, variables, env) for p in expr.split("+"))
    if expr.startswith("var."):
        return variables[expr[4:]]
    if expr in env:
        return env[expr]
    return int(expr)


@pytest.fixture(scope="module")
def ports(group, variables):
    """Port label -> (static port, host_network), with dynamic port blocks expanded."""
    network = only(group, "network")
    assert network["mode"] == "host", "host network: the proxy serves 127.0.0.1 of the node"
    out = {}
    for label, body in blocks(network, "port").items():
        out[label] = (eval_expr(str(body["static"]), variables), eval_expr(body["host_network"], variables))
    for kind, dyn in blocks(network, "dynamic").items():
        assert kind == "port"
        for value in eval_expr(dyn["for_each"], variables):
            label = dyn["labels"][0].replace("${port.value}", str(value))
            content = dyn["content"][0]
            static = eval_expr(str(content["static"]), variables, {"port.value": value})
            out[label] = (static, eval_expr(content["host_network"], variables))
    return out


def resolve(text, variables, ports):
    """Substitutes ${var.x}, ${NOMAD_PORT_l}, ${NOMAD_IP_l}, ${NOMAD_SECRETS_DIR} in a string."""

    def one(m):
        name = m[1]
        if name.startswith("var."):
            return str(variables[name[4:]])
        if name.startswith("NOMAD_PORT_"):
            return str(ports[name[len("NOMAD_PORT_"):]][0])
        if name.startswith("NOMAD_IP_"):
            network = ports[name[len("NOMAD_IP_"):]][1]
            assert network == variables["host_network"]
            return LOOPBACK
        if name == "NOMAD_SECRETS_DIR":
            return SECRETS_DIR
        raise AssertionError(f"unknown interpolation ${{{name}}} in {text!r}")

    return re.sub(r"\$\{([^}]+)\}", one, text)


@pytest.fixture(scope="module")
def args(task, variables, ports):
    config = only(task, "config")
    return [resolve(a, variables, ports) for a in config["args"]]


@pytest.fixture(scope="module")
def flags(args):
    """--flag -> value (None for switches)."""
    out = {}
    for a in args:
        flag, value = split_flag(a)
        assert flag.startswith("--"), f"arg {a!r} is not --flag or --flag=value"
        assert flag not in out, f"{flag} given twice"
        out[flag] = value
    return out


def test_system_job_one_proxy_per_node(job, group):
    assert job["type"] == "system"
    assert "count" not in group, "a system job runs one per node; count does not apply"


def test_every_flag_exists_in_the_binary(args, flags):
    unknown = sorted(set(flags) - known_flags())
    assert not unknown, f"flags the binary does not have: {unknown}"
    assert len(flags) >= 10


def test_listens_on_loopback_with_the_proxy_port_formula(flags, ports, variables):
    assert flags["--bind-address"] == LOOPBACK
    assert flags["--advertised-host"] == LOOPBACK
    assert "--allow-plaintext-listener" not in flags, "loopback needs no plaintext override"
    assert int(flags["--bootstrap-port"]) == ports["bootstrap"][0] == 9092
    base = int(flags["--broker-port-base"])
    assert base == 9100
    brokers = {label: p for label, (p, _) in ports.items() if label.startswith("broker_")}
    # MSK node ids start at 1: node N -> base + N, one reserved port per broker.
    assert brokers == {f"broker_{n}": base + n for n in range(1, variables["broker_count"] + 1)}
    assert sorted(brokers.values()) == [9101, 9102, 9103]
    for label, (_, network) in ports.items():
        assert network == "loopback", f"port {label} is not on the loopback host network"
    assert len({p for p, _ in ports.values()}) == len(ports), "port clash"


def test_upstream_is_the_bootstrap_variable(doc, task):
    assert "--upstream=${var.msk_bootstrap}" in only(task, "config")["args"]
    assert "default" not in blocks(doc, "variable")["msk_bootstrap"], "msk_bootstrap must be given"


def test_admin_port_health_check_is_readyz(group, flags, ports):
    admin = flags["--admin-address"]
    assert admin == f"{LOOPBACK}:{ports['admin'][0]}" == "127.0.0.1:9644"
    services = group.get("service", [])
    assert len(services) == 1
    checks = services[0].get("check", [])
    ready = [c for c in checks if c.get("path") == "/readyz"]
    assert len(ready) == 1, checks
    assert ready[0]["type"] == "http"
    assert ready[0]["port"] == "admin"
    assert duration_seconds(ready[0]["timeout"]) <= duration_seconds(ready[0]["interval"])
    assert "check_restart" not in ready[0], "an unreachable MSK must not restart the proxy"
    alive = [c for c in checks if c.get("path") == "/healthz"]
    assert len(alive) == 1 and alive[0]["port"] == "admin" and "check_restart" in alive[0]


def test_kill_timeout_exceeds_the_drain(task, flags):
    assert task["kill_signal"] == "SIGTERM"
    kill = duration_seconds(task["kill_timeout"])
    drain = duration_seconds(flags["--drain-timeout"])
    assert drain == 25
    assert kill > drain, f"kill_timeout {kill}s must exceed --drain-timeout {drain}s"
    assert kill <= 30, "Nomad clients cap kill_timeout at max_kill_timeout (30s by default)"


def test_certificates_rendered_with_sighup_reload(task, flags):
    templates = task.get("template", [])
    assert len(templates) >= 2
    rendered = {}
    for t in templates:
        # The proxy re-reads certificate, key and passphrase file on SIGHUP.
        assert t["change_mode"] == "signal", t["destination"]
        assert t["change_signal"] == "SIGHUP", t["destination"]
        assert t["destination"].startswith("secrets/"), "secrets/ is not readable by other tasks"
        assert t["perms"] == "0400"
        assert "{{ with secret " in t["data"], "rendered from Vault"
        rendered[SECRETS_DIR + t["destination"][len("secrets"):]] = t
    for flag in ("--client-cert", "--client-key", "--client-key-passphrase-file"):
        assert flags[flag] in rendered, f"{flag}={flags[flag]} is not rendered by any template"
    assert rendered[flags["--client-cert"]]["change_signal"] == "SIGHUP"
    assert rendered[flags["--client-key"]]["change_signal"] == "SIGHUP"
    assert rendered[flags["--client-key-passphrase-file"]]["change_signal"] == "SIGHUP"
    assert "vault" in task


def test_rolling_update(job):
    update = only(job, "update")
    assert update["max_parallel"] == 1
    assert duration_seconds(update["stagger"]) > 0


def test_the_binary_accepts_the_jobs_arguments(args, flags):
    """Runs `kafka-tls-proxy <the job's args> check` (secrets replaced by the dev certificates,
    the upstream by a closed local port): the flags parse and validate (no usage error, exit 2)
    and the check fails only at the upstream connection."""
    certs = REPO / "certs-dev"
    replaced = []
    for a in args:
        flag, value = split_flag(a)
        if flag == "--upstream":
            value = "127.0.0.1:1"
        elif flag == "--client-cert":
            value = str(certs / "service.pem")
        elif flag == "--client-key":
            value = str(certs / "service-encrypted.key")
        elif flag == "--client-key-passphrase-file":
            value = str(certs / "service-encrypted.pass")
        replaced.append(flag if value is None else f"{flag}={value}")
    out = subprocess.run(
        [str(binary()), *replaced, "--connect-timeout=2s", "check"],
        capture_output=True, text=True, timeout=60,
    )
    text = out.stdout + out.stderr
    assert out.returncode != 2 and "error: unexpected argument" not in text, text
    assert "127.0.0.1:1" in text, f"check did not get to the upstream connection:\n{text}"
