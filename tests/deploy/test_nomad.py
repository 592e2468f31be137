"""nomad/kafka-tls-proxy.nomad.hcl, parsed with a real HCL2 parser (python-hcl2) and checked
against the proxy binary: its flags, ports, signals and timeouts.

The job's args use HCL variables (var.x, with defaults) and Nomad runtime variables
(NOMAD_PORT_<label>, NOMAD_IP_<label>, NOMAD_SECRETS_DIR); `resolve` substitutes them the way
Nomad would on a client whose host network `loopback` is 127.0.0.1.
"""

import re
import subprocess
import textwrap
import tomllib

import hcl2
import pytest

from conftest import REPO, binary, duration_seconds, known_flags, split_flag

JOB_FILE = REPO / "nomad/kafka-tls-proxy.nomad.hcl"
LOOPBACK = "127.0.0.1"
SECRETS_DIR = "/secrets"  # NOMAD_SECRETS_DIR inside a docker task
TASK_DIR = "/local"  # NOMAD_TASK_DIR inside a docker task
MIB = 1 << 20
# The keys of an [[identity]] table (README "Identities") and the policies.
IDENTITY_KEYS = {
    "name", "bootstrap-port", "broker-port-base", "broker-port", "client-cert", "client-key",
    "client-key-passphrase-file", "policy", "client-subject-cn", "client-san",
}
POLICIES = {"full", "read-only", "no-admin"}


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
    for entry in network.get("dynamic", []):  # several `dynamic "port"` blocks
        for kind, dyn in entry.items():
            assert kind == "port"
            for value in eval_expr(dyn["for_each"], variables):
                label = dyn["labels"][0].replace("${port.value}", str(value))
                content = dyn["content"][0]
                static = eval_expr(str(content["static"]), variables, {"port.value": value})
                assert label not in out, f"port label {label} twice"
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
        if name == "NOMAD_TASK_DIR":
            return TASK_DIR
        raise AssertionError(f"unknown interpolation ${{{name}}} in {text!r}")

    return re.sub(r"\$\{([^}]+)\}", one, text)


def heredoc(data):
    """The text of a `<<-EOT ... EOT` heredoc as python-hcl2 keeps it, indentation removed."""
    m = re.fullmatch(r"<<-?(\w+)\n(.*?)\n?[ \t]*\1", data, re.S)
    assert m, f"not a heredoc: {data!r}"
    return textwrap.dedent(m[2]) + "\n"


def render_template(data, variables, ports):
    """Renders a template's data as Nomad would: HCL interpolation (${var.x}) when the job is
    parsed, then consul-template's {{ env "NOMAD_..." }} in the task's environment."""
    text = resolve(heredoc(data), variables, ports)

    def env(m):
        name = m[1]
        if name == "NOMAD_SECRETS_DIR":
            return SECRETS_DIR
        if name.startswith("NOMAD_PORT_"):
            return str(ports[name[len("NOMAD_PORT_"):]][0])
        raise AssertionError(f"unknown env {name} in a template")

    text = re.sub(r'\{\{\s*env\s+"([A-Za-z0-9_]+)"\s*\}\}', env, text)
    assert "{{" not in text, f"unrendered template code left:\n{text}"
    return text


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


def secret_templates(task):
    return [t for t in task.get("template", []) if t["destination"].startswith("secrets/")]


def test_certificates_rendered_with_sighup_reload(task, flags):
    templates = secret_templates(task)
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


@pytest.fixture(scope="module")
def config_template(task, flags):
    """The template that renders the --config file."""
    path = flags["--config"]
    assert path.startswith(TASK_DIR + "/"), f"--config={path} is not in the task's local/"
    found = [t for t in task.get("template", []) if "local" + path[len(TASK_DIR):] == t["destination"]]
    assert len(found) == 1, f"no template renders --config={path}"
    return found[0]


@pytest.fixture(scope="module")
def identities(config_template, variables, ports):
    """The [[identity]] tables of the rendered --config file."""
    config = tomllib.loads(render_template(config_template["data"], variables, ports))
    assert set(config) == {"identity"}, f"the config file sets more than identities: {set(config)}"
    return config["identity"]


def test_identities_config_parses_as_toml_with_the_identity_keys(identities):
    assert len(identities) == 2, "two services with an identity of their own"
    names = [i["name"] for i in identities]
    assert len(set(names)) == len(names), names
    for i in identities:
        unknown = set(i) - IDENTITY_KEYS
        assert not unknown, f"identity {i['name']}: keys the proxy does not have: {unknown}"
        assert i["policy"] in POLICIES, i
        for key in ("bootstrap-port", "broker-port-base", "client-cert", "client-key"):
            assert key in i, f"identity {i['name']} without {key}"
        assert "client-subject-cn" not in i and "client-san" not in i, "plaintext loopback: ports"
    policies = {i["name"]: i["policy"] for i in identities}
    assert sorted(policies.values()) == ["no-admin", "read-only"], policies


def test_each_identity_has_its_reserved_port_pair(identities, ports, variables, flags):
    """Every identity's bootstrap and broker ports (node ids 1..broker_count, the proxy's
    formula) are reserved on the loopback host network, and no two identities share one."""
    used = {int(flags["--bootstrap-port"])} | {
        int(flags["--broker-port-base"]) + n for n in range(1, variables["broker_count"] + 1)
    }
    for i in identities:
        name = i["name"]
        assert ports[f"{name}_bootstrap"] == (i["bootstrap-port"], "loopback"), name
        mine = {i["bootstrap-port"]}
        for n in range(1, variables["broker_count"] + 1):
            port = i["broker-port-base"] + n
            assert ports[f"{name}_broker_{n}"] == (port, "loopback"), (name, n)
            mine.add(port)
        assert not mine & used, f"identity {name} shares ports {mine & used}"
        used |= mine
    # As the proxy checks at start: every identity claims its bootstrap port and its whole
    # broker range BASE .. BASE + --max-brokers - 1; no port may be claimed by two identities.
    max_brokers = int(flags.get("--max-brokers", 256))
    assert max_brokers >= variables["broker_count"] + 1
    claims = [("default", int(flags["--bootstrap-port"]), int(flags["--broker-port-base"]))]
    claims += [(i["name"], i["bootstrap-port"], i["broker-port-base"]) for i in identities]
    owner = {}
    for name, bootstrap, base in claims:
        for port in [bootstrap, *range(base, base + max_brokers)]:
            assert owner.get(port, name) == name, f"port {port}: identities {owner[port]} and {name}"
            owner[port] = name


def test_each_identity_has_its_own_vault_secret_and_sighup_templates(identities, task, variables):
    """Each identity's certificate, key and passphrase file is rendered from that identity's
    own Vault secret by a template that sends SIGHUP."""
    by_file = {SECRETS_DIR + t["destination"][len("secrets"):]: t for t in secret_templates(task)}
    paths = {}
    for i in identities:
        sources = set()
        for key, field in (("client-cert", "certificate"), ("client-key", "private_key"),
                           ("client-key-passphrase-file", "passphrase")):
            t = by_file.get(i[key])
            assert t, f"identity {i['name']}: {key}={i[key]} is not rendered by any template"
            assert t["change_mode"] == "signal" and t["change_signal"] == "SIGHUP", t["destination"]
            assert t["perms"] == "0400", t["destination"]
            m = re.search(r'with secret "\$\{var\.(\w+)\}" \}\}\{\{ \.Data\.data\.(\w+) \}\}', t["data"])
            assert m, t["data"]
            assert m[2] == field, f"{t['destination']} renders {m[2]}, not {field}"
            sources.add(variables[m[1]])
        assert len(sources) == 1, f"identity {i['name']} reads several secrets: {sources}"
        paths[i["name"]] = sources.pop()
    assert len(set(paths.values())) == len(paths), f"identities share a secret: {paths}"
    assert variables["vault_secret_path"] not in paths.values(), "the default identity's secret"


def test_config_template_restarts_the_task(config_template):
    """The proxy reads --config at start; its ports are reserved by the job: a change restarts."""
    assert config_template["change_mode"] == "restart"
    assert "{{ with secret" not in config_template["data"], "no secrets in local/"


def test_memory_covers_the_frame_budget(task, flags, variables):
    """README "Sizing and limits": memory ~ 40 MiB + 0.25 MiB per busy connection + the
    --max-buffered-bytes budget (shared by every identity's connections)."""
    budget = int(flags["--max-buffered-bytes"])
    memory = eval_expr(str(only(task, "resources")["memory"]), variables)
    assert budget == 128 * MIB, "the proxy's default budget"
    assert memory == 256, "a 256 MiB task for the default budget"
    assert memory * MIB >= budget + 40 * MIB + 300 * MIB // 4, "process + 300 busy connections"


def test_rolling_update(job):
    update = only(job, "update")
    assert update["max_parallel"] == 1
    assert duration_seconds(update["stagger"]) > 0


def test_the_binary_accepts_the_jobs_arguments(args, flags, config_template, variables, ports, tmp_path):
    """Runs `kafka-tls-proxy <the job's args> check` (secrets replaced by the dev certificates,
    the --config file rendered with them, the upstream by a closed local port): the flags and
    the identities parse and validate (no usage error, exit 2) and the check fails only at the
    upstream connection."""
    certs = REPO / "certs-dev"
    dev = {  # rendered secret file -> a dev file of the same kind
        ".pem": certs / "service.pem",
        ".key": certs / "service-encrypted.key",
        ".pass": certs / "service-encrypted.pass",
    }
    config = render_template(config_template["data"], variables, ports)
    config = re.sub(
        re.escape(SECRETS_DIR) + r"/[\w.-]+?(\.pem|\.key|\.pass)\b",
        lambda m: str(dev[m[1]]),
        config,
    )
    assert SECRETS_DIR not in config, config
    config_file = tmp_path / "kafka-tls-proxy.toml"
    config_file.write_text(config)
    replaced = []
    for a in args:
        flag, value = split_flag(a)
        if flag == "--upstream":
            value = "127.0.0.1:1"
        elif flag == "--client-cert":
            value = str(dev[".pem"])
        elif flag == "--client-key":
            value = str(dev[".key"])
        elif flag == "--client-key-passphrase-file":
            value = str(dev[".pass"])
        elif flag == "--config":
            value = str(config_file)
        replaced.append(flag if value is None else f"{flag}={value}")
    out = subprocess.run(
        [str(binary()), *replaced, "--connect-timeout=2s", "check"],
        capture_output=True, text=True, timeout=60,
    )
    text = out.stdout + out.stderr
    assert out.returncode != 2 and "error: unexpected argument" not in text, text
    assert "127.0.0.1:1" in text, f"check did not get to the upstream connection:\n{text}"
