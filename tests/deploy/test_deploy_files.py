"""The deployment files, checked without Docker: they parse, name only commands, options, settings,
variables and metrics that exist, keep secrets out, and the image's entry points run in this environment.
"""

from __future__ import annotations

import ast
import copy
import functools
import http.server
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from dockerfile_parse import DockerfileParser
from psycopg.conninfo import conninfo_to_dict

from alphaloom.cli.main import app
from alphaloom.core.config import load_config
from alphaloom.service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GUIDE = ROOT / "docs" / "DEPLOYMENT.md"
ALPHALOOM_BIN = Path(sys.executable).parent / "alphaloom"


# ----------------------------------------------------------------------------------------------- helpers
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DEPLOY / "Dockerfile"))


def stages() -> dict[str, list[dict]]:
    """Instructions of each stage of the Dockerfile, by stage name."""
    out: dict[str, list[dict]] = {}
    current: list[dict] | None = None
    for item in dockerfile().structure:
        if item["instruction"] == "FROM":
            words = item["value"].split()
            name = words[words.index("AS") + 1] if "AS" in words else f"stage{len(out)}"
            current = out.setdefault(name, [item])
        elif current is not None:
            current.append(item)
    return out


def effective(stage: str, instruction: str) -> list[dict]:
    """``instruction``s in force in ``stage``, following its FROM chain back to the base image."""
    all_stages = stages()
    chain = []
    while stage in all_stages:
        chain.append(stage)
        stage = all_stages[stage][0]["value"].split()[0]
    found: list[dict] = []
    for name in reversed(chain):
        found += [i for i in all_stages[name] if i["instruction"] == instruction]
    return found


def exec_form(item: dict) -> list[str]:
    value = item["value"]
    if item["instruction"] == "HEALTHCHECK":
        value = value[value.index("CMD") + 3 :]
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"{item['instruction']} must use the exec (JSON) form: {item['content']}"
    return parsed


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


@functools.cache
def click_app():
    """The click command tree typer builds from alphaloom's app (what `alphaloom` parses)."""
    return typer.main.get_command(app)


def check_alphaloom_args(args: list[str], where: str):
    """``alphaloom ARGS`` names existing (sub)commands, and every ``--option`` exists on the last of them."""
    command = click_app()
    path = ["alphaloom"]
    i = 0
    # Typer builds on its own copy of click: a group is whatever has subcommands.
    while getattr(command, "commands", None) and i < len(args) and not args[i].startswith("-"):
        sub = command.commands.get(args[i])
        assert sub is not None, f"{where}: `{' '.join([*path, args[i]])}` is not an alphaloom command"
        command, i = sub, i + 1
        path.append(args[i - 1])
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    for token in args[i:]:
        if token.startswith("--"):
            option = token.split("=", 1)[0]
            assert option in known, (
                f"{where}: `{' '.join(path)}` has no option {option} (has {sorted(known)})"
            )
    return command


def _expand(tokens: list[str]) -> list[list[str]]:
    """``a|b`` in a command word stands for either (``tune cnn-lstm|agent``)."""
    variants: list[list[str]] = [[]]
    for token in tokens:
        choices = token.split("|") if re.fullmatch(r"[a-z-]+(\|[a-z-]+)+", token) else [token]
        variants = [[*v, c] for v in variants for c in choices]
    return variants


def _invocations(tokens: list[str], entry_services: set[str]) -> Iterator[list[str]]:
    for token in tokens:  # a quoted command: ray exec CONFIG "alphaloom tune ..."
        if token.startswith("alphaloom ") and token != " ".join(tokens):
            yield from _invocations(shlex.split(token), entry_services)
    if tokens[:1] == ["alphaloom"]:
        yield tokens[1:]
    if tokens[:2] == ["docker", "compose"]:
        words = tokens[2:]
        while words and words[0].startswith("-"):  # --profile NAME
            words = words[2:]
        if words[:1] and words[0] in ("run", "exec"):
            rest = words[1:]
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            if not rest:
                return
            service, args = rest[0], rest[1:]
            if args[:1] == ["alphaloom"]:
                yield args[1:]
            elif words[0] == "run" and service in entry_services and args:
                yield args


def alphaloom_commands(text: str, entry_services: set[str]) -> list[list[str]]:
    """Every ``alphaloom`` invocation in code blocks, inline code and comments of ``text``."""
    lines = []
    in_block = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            lines.append(line)
        else:
            lines += re.findall(r"`([^`]+)`", line)
            if line.startswith("#"):
                lines.append(line.lstrip("#").strip())
    found = []
    for line in lines:
        for segment in re.split(r"&&|;", line):
            try:
                tokens = shlex.split(segment, comments=True)
            except ValueError:
                continue
            for args in _invocations(tokens, entry_services):
                found += _expand(args)
    return found


def entry_services() -> set[str]:
    """Compose services whose entrypoint is the image's ``alphaloom``."""
    return {
        name
        for name, svc in compose()["services"].items()
        if str(svc.get("image", "")).startswith("alphaloom:") and "entrypoint" not in svc
    }


# ----------------------------------------------------------------------------------------------- Dockerfile
def test_dockerfile_is_multi_stage_with_cpu_and_cuda_targets() -> None:
    names = list(stages())
    assert {"builder-cpu", "builder-cuda", "runtime", "cpu", "cuda"} <= set(names)
    assert names[-1] == "cpu"  # a plain `docker build` gives the CPU image
    for variant in ("cpu", "cuda"):
        copies = [i["value"] for i in stages()[variant] if i["instruction"] == "COPY"]
        assert copies == [f"--from=builder-{variant} /opt/alphaloom /opt/alphaloom"]
    torch_cpu = " ".join(i["value"] for i in stages()["torch-cpu"] if i["instruction"] == "RUN")
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_cpu
    torch_cuda = " ".join(i["value"] for i in stages()["torch-cuda"] if i["instruction"] == "RUN")
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in torch_cuda
    # The runtime stages install nothing from an index: build tools stay in the builder.
    for name in ("runtime", "cpu", "cuda"):
        runs = " ".join(i["value"] for i in stages()[name] if i["instruction"] == "RUN")
        assert "pip install" not in runs
        assert "build-essential" not in runs
    make_torch = re.search(r"TORCH_VERSION \?= (\S+)", (ROOT / "Makefile").read_text()).group(1)
    assert (
        f"TORCH_VERSION={make_torch}" in (DEPLOY / "Dockerfile").read_text()
    )  # the same torch as make install


def test_the_image_runs_as_a_non_root_user_with_alphaloom_as_entrypoint() -> None:
    for variant in ("cpu", "cuda"):
        users = [i["value"].strip() for i in effective(variant, "USER")]
        assert users, f"{variant}: no USER, the image would run as root"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), f"{variant} runs as {users[-1]}"
        assert int(user) >= 1000
        assert exec_form(effective(variant, "ENTRYPOINT")[-1]) == ["alphaloom"]
        cmd = exec_form(effective(variant, "CMD")[-1])
        assert cmd[:1] == ["serve"]
        check_alphaloom_args(cmd, "Dockerfile CMD")
    runtime = " ".join(i["value"] for i in stages()["runtime"] if i["instruction"] == "RUN")
    assert "useradd --system --uid 10001" in runtime


def test_the_build_context_holds_what_the_image_copies_and_nothing_secret() -> None:
    patterns = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]

    def excluded(path: str) -> bool:
        # Docker's rule: the last pattern matching the path or one of its parents decides.
        parts = path.split("/")
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            body = pattern[1:] if negate else pattern
            regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
            if any(re.fullmatch(regex, "/".join(parts[:k])) for k in range(1, len(parts) + 1)):
                result = not negate
        return result

    copied = [
        word
        for item in dockerfile().structure
        if item["instruction"] == "COPY" and "--from" not in item["value"]
        for word in item["value"].split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not excluded(source), f".dockerignore excludes {source}, which the Dockerfile copies"
    assert not excluded("src/alphaloom/cli/main.py")
    for private in (
        ".venv/bin/python",
        ".git/config",
        ".alphaloom/alphaloom.duckdb",
        "deploy/secrets/results_dsn",
    ):
        assert excluded(private), f"{private} would be sent to the builder"


def test_no_secret_is_baked_into_the_image() -> None:
    for item in dockerfile().structure:
        if item["instruction"] in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(?i)(password|secret|token|passphrase|api_key)\s*=", item["value"]), item


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthcheck(port: int) -> list[str]:
    items = [i for i in dockerfile().structure if i["instruction"] == "HEALTHCHECK"]
    assert len(items) == 1
    command = exec_form(items[0])
    assert command[:2] == ["python", "-c"]
    code = command[2]
    ast.parse(code)
    cmd = exec_form(effective("cpu", "CMD")[-1])
    served_port = cmd[cmd.index("--port") + 1]
    assert f"http://127.0.0.1:{served_port}/healthz" in code  # the port the CMD serves on
    assert f"EXPOSE {served_port}" in (DEPLOY / "Dockerfile").read_text()
    return [sys.executable, "-c", code.replace(f"127.0.0.1:{served_port}", f"127.0.0.1:{port}")]


def test_entry_points_run_and_the_healthcheck_passes_only_while_the_service_answers(
    tmp_path: Path, free_port: int
) -> None:
    for args in (["--help"], ["serve", "--help"], [*exec_form(effective("cpu", "CMD")[-1]), "--help"]):
        proc = subprocess.run([str(ALPHALOOM_BIN), *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "Usage: alphaloom" in proc.stdout
    healthcheck = _healthcheck(free_port)
    # The image's CMD, on a free local port and an empty workspace: /healthz answers (readiness would not).
    cmd = exec_form(effective("cpu", "CMD")[-1])
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = str(free_port)
    server = subprocess.Popen(
        [str(ALPHALOOM_BIN), *cmd, "--data-dir", str(tmp_path), "--no-trade-paper"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            probe = subprocess.run(healthcheck, capture_output=True, timeout=30)
            if probe.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read() if server.stderr else "server exited"
            assert time.monotonic() < deadline, "alphaloom serve did not answer /healthz within 90 s"
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    down = subprocess.run(healthcheck, capture_output=True, timeout=30)
    assert down.returncode != 0  # nothing answers: the check fails, so Docker marks the container unhealthy


def test_the_healthcheck_fails_on_an_error_status(free_port: int) -> None:
    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert subprocess.run(_healthcheck(free_port), capture_output=True, timeout=30).returncode != 0
    finally:
        server.shutdown()
        server.server_close()


# ----------------------------------------------------------------------------------------------- compose
def test_compose_runs_the_service_with_postgres_redis_and_a_ray_head() -> None:
    doc = compose()
    services = doc["services"]
    assert {"alphaloom", "migrate", "postgres", "redis", "ray-head"} <= set(services)
    assert re.fullmatch(r"postgres:15(\.\d+)?(-\S+)?", services["postgres"]["image"])
    assert re.fullmatch(r"redis:7(\.\d+)*(-\S+)?", services["redis"]["image"])
    build = services["alphaloom"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
    assert build["target"].endswith("cpu}") or build["target"] == "cpu"
    assert services["alphaloom"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name]
        assert "ports" not in services[name]  # reachable on the internal network only
    assert doc["networks"]["backend"]["internal"] is True
    for name, svc in services.items():
        if str(svc.get("image", "")).startswith("alphaloom:"):
            assert svc.get("user", "").split(":")[0] not in ("", "0", "root"), name


def test_compose_commands_exist() -> None:
    services = compose()["services"]
    checked = 0
    for name in entry_services():
        command = services[name].get("command")
        if command:
            check_alphaloom_args(list(command), f"docker-compose.yml service {name}")
            checked += 1
    assert checked >= 2  # the service and the migration
    from ray.scripts.scripts import cli as ray_cli

    head = services["ray-head"]
    assert head["entrypoint"] == ["ray"]
    start = ray_cli.commands[head["command"][0]]
    options = {o for p in start.params for o in p.opts}
    for token in head["command"][1:]:
        assert token.split("=", 1)[0] in options, f"ray start has no option {token}"


def test_compose_keeps_secrets_in_files() -> None:
    doc = compose()
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    assert not re.search(r"postgres(ql)?://[^/\s]*:[^@/\s]+@", text), (
        "a DSN with a password in the compose file"
    )
    for name, svc in doc["services"].items():
        env = svc.get("environment", {})
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for key, value in items:
            if re.search(r"(?i)password|secret|token|passphrase|api_key|dsn", key):
                assert key.endswith("_FILE"), (name, key)
                assert str(value).startswith("/run/secrets/"), (name, key)
        for secret in svc.get("secrets", []):
            assert secret in doc["secrets"], (name, secret)
    ignored = (DEPLOY / "secrets" / ".gitignore").read_text().split()
    assert "*" in ignored
    for secret in doc["secrets"].values():
        path = (DEPLOY / secret["file"]).resolve()
        assert path.parent == (DEPLOY / "secrets").resolve()  # git-ignored
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "deploy/secrets"], capture_output=True, text=True, check=False
    ).stdout.split()
    assert set(tracked) <= {"deploy/secrets/.gitignore", "deploy/secrets/README.md"}


def test_make_secrets_writes_a_dsn_matching_the_password_and_never_changes_it(tmp_path: Path) -> None:
    work = tmp_path / "deploy"
    work.mkdir()
    shutil.copy(DEPLOY / "make-secrets.sh", work / "make-secrets.sh")
    for _ in range(2):
        proc = subprocess.run(
            ["sh", str(work / "make-secrets.sh")], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0, proc.stderr
        if _ == 0:
            first = (work / "secrets" / "postgres_password").read_text()
    password = (work / "secrets" / "postgres_password").read_text()
    assert password == first
    assert len(password) >= 32
    dsn = conninfo_to_dict((work / "secrets" / "results_dsn").read_text().strip())
    assert dsn == {
        "user": "alphaloom",
        "password": password,
        "host": "postgres",
        "port": "5432",
        "dbname": "alphaloom",
    }
    assert (work / "secrets").stat().st_mode & 0o777 == 0o700


def test_service_config_and_env_file_name_real_settings(tmp_path: Path) -> None:
    settings = load_config(ServiceSettings, DEPLOY / "service.toml", "service")
    assert settings.redis_url == "redis://redis:6379/0"
    assert str(settings.data_dir) == "/data"
    mounted = [v for v in compose()["services"]["alphaloom"]["volumes"] if "service.toml" in v]
    command = compose()["services"]["alphaloom"]["command"]
    assert mounted[0].split(":")[1] == command[command.index("--config") + 1]
    bad = tmp_path / "bad.toml"
    bad.write_text('[service]\nredis_ulr = "redis://x"\n')
    with pytest.raises(Exception, match="redis_ulr"):
        load_config(ServiceSettings, bad, "service")
    for line in (DEPLOY / "alphaloom.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key = line.partition("=")[0]
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), line
            assert not re.search(r"(?i)password|secret|token|passphrase", key), line


# ----------------------------------------------------------------------------------------------- Ray
def test_ray_cluster_config_passes_rays_own_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text(encoding="utf-8"))
    validate_config(prepare_config(copy.deepcopy(config)))
    assert "--entrypoint=" in config["docker"]["run_options"]  # the launcher starts the container with bash
    from ray.scripts.scripts import cli as ray_cli

    options = {o for p in ray_cli.commands["start"].params for o in p.opts}
    for line in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        for segment in line.split(";"):
            tokens = shlex.split(segment)
            if tokens[:2] == ["ray", "start"]:
                for token in tokens[2:]:
                    assert token.split("=", 1)[0] in options, token
    broken = copy.deepcopy(config)
    broken["max_worker"] = 2
    with pytest.raises(Exception, match="max_worker"):
        validate_config(prepare_config(broken))


# ----------------------------------------------------------------------------------------------- docs
def test_every_alphaloom_command_in_the_deployment_files_exists() -> None:
    services = entry_services()
    sources = {p: p.read_text(encoding="utf-8") for p in (GUIDE, DEPLOY / "ray-cluster.yaml")}
    sources[DEPLOY / "docker-compose.yml"] = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    total = 0
    for path, text in sources.items():
        for args in alphaloom_commands(text, services):
            check_alphaloom_args(args, path.name)
            total += bool(args)
    assert total >= 25  # the guide, the cluster config and the compose file really are checked
    with pytest.raises(AssertionError, match="not an alphaloom command"):
        check_alphaloom_args(["resutls", "list"], "self-test")
    with pytest.raises(AssertionError, match="no option --kinds"):
        check_alphaloom_args(["results", "list", "--kinds", "backtest"], "self-test")


def _string_constants() -> str:
    parts = []
    for path in (ROOT / "src" / "alphaloom").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                parts.append(node.value)
    return "\n".join(parts)


def test_every_alphaloom_variable_and_metric_named_exists() -> None:
    code = _string_constants()
    envvars = {
        e
        for cmd in click_app().commands.values()
        for p in getattr(cmd, "params", [])
        for e in ([p.envvar] if isinstance(p.envvar, str) else p.envvar or [])
    }
    texts = [GUIDE.read_text(encoding="utf-8")] + [
        p.read_text(encoding="utf-8") for p in DEPLOY.rglob("*") if p.is_file() and p.name != "README.md"
    ]
    named = {v for text in texts for v in re.findall(r"\bALPHALOOM_[A-Z0-9_]*[A-Z0-9]\b", text)}
    assert "ALPHALOOM_RESULTS_DSN_FILE" in named
    for variable in sorted(named):
        assert variable in envvars or re.search(rf"\b{variable}\b", code), f"{variable} is read nowhere"
    metrics_code = (ROOT / "src" / "alphaloom" / "service" / "metrics.py").read_text(encoding="utf-8")
    guide = GUIDE.read_text(encoding="utf-8")
    monitoring = guide[guide.index("## Monitoring") : guide.index("\n## ", guide.index("## Monitoring") + 5)]
    metrics = set(re.findall(r"\balphaloom_[a-z_]+", monitoring + (DEPLOY / "alerts.yml").read_text()))
    assert len(metrics) >= 8
    for metric in sorted(metrics):
        base = re.sub(r"_(bucket|sum|count)$", "", metric)
        assert f'"{base}"' in metrics_code, f"metric {metric} is not defined in service/metrics.py"
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["alphaloom:8000"]
    alerts = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    assert all({"alert", "expr"} <= set(rule) for group in alerts["groups"] for rule in group["rules"])


def test_routes_the_deployment_relies_on_exist() -> None:
    from alphaloom.service.routers.health import router

    paths = {route.path for route in router.routes}
    assert {"/healthz", "/readyz", "/metrics"} <= paths
