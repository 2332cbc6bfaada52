"""Secrets in the device map: passwords that must exist before start, and URLs that never show one."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from agent.central.engine import redact_url, redacted
from agent.configload import ConfigError, load_config, load_config_text
from agent.pipeline.statefile import FILE_NAME, read_state, write_state
from tests.agent.test_configload import UA_LOGIN

ROOT = Path(__file__).resolve().parents[2]

MAP = """\
gateway: {id: gw1}
central:
  url: mysql+pymysql://edge@127.0.0.1:1/hacksky
  password_file: PASSWORD_FILE
buffer: {path: BUFFER}
devices:
  - id: meter-01
    host: 127.0.0.1
    points: [{name: v, address: 0}]
"""


def write_map(tmp_path: Path, password_file: Path) -> Path:
    config = tmp_path / "plant.yaml"
    config.write_text(MAP.replace("PASSWORD_FILE", str(password_file)).replace("BUFFER", str(tmp_path / "buf")))
    return config


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_missing_password_file_is_reported_by_check_with_line_path_and_remedy(tmp_path: Path) -> None:
    missing = tmp_path / "mysql.pass"
    config = write_map(tmp_path, missing)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value) == (
        f"{config}:4:18: central.password_file: {missing} does not exist: create it with "
        f"`install -m 0600 /dev/null {missing}` (owned by the user the agent runs as) and write the password in it")
    missing.write_text("")
    with pytest.raises(ConfigError, match=r"central\.password_file: .* is empty: write the password in it"):
        load_config(config)
    missing.write_text("s3cret\n")
    missing.chmod(0o600)
    assert load_config(config).central.password_file == missing


@pytest.mark.parametrize("command", ["run", "init-db", "check"])
def test_missing_password_file_stops_every_command_with_one_line_and_no_traceback(tmp_path: Path,
                                                                                    command: str) -> None:
    config = write_map(tmp_path, tmp_path / "absent.pass")
    result = cli(command, "-c", str(config))
    assert result.returncode == (1 if command == "check" else 2), result.stderr
    assert "Traceback" not in result.stderr and "FileNotFoundError" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{config}:4:18: central.password_file: {tmp_path / 'absent.pass'} does not exist")


def test_status_needs_no_password_file(tmp_path: Path) -> None:
    config = write_map(tmp_path, tmp_path / "absent.pass")
    result = cli("status", "-c", str(config))
    assert result.returncode == 1 and "no state in" in result.stderr, result.stderr


def test_example_map_tells_a_newcomer_how_to_create_the_password_file() -> None:
    example = ROOT / "config" / "example.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(example)
    (issue,) = info.value.issues
    line = next(n for n, text in enumerate(example.read_text().splitlines(), 1) if "  password_file:" in text)
    assert (issue.path, issue.line) == ("central.password_file", line)
    assert "install -m 0600 /dev/null /etc/hacksky-edge/mysql.pass" in issue.message


#: a username login whose password comes from an environment variable (the mode allows it)
OPCUA_LOGIN = UA_LOGIN.replace("mode: MODE", "mode: SignAndEncrypt").replace("UA_PASSWORD", "HACKSKY_TEST_UA_PASSWORD")


def test_password_env_naming_an_unset_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HACKSKY_TEST_UA_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config_text(OPCUA_LOGIN, "plant.yaml")
    assert str(info.value).startswith("plant.yaml:8:19: devices[0].password_env: environment variable "
                                      "HACKSKY_TEST_UA_PASSWORD is not set")
    monkeypatch.setenv("HACKSKY_TEST_UA_PASSWORD", "s3cret")
    assert load_config_text(OPCUA_LOGIN).devices
    assert load_config_text(OPCUA_LOGIN.replace("  - id: ua\n", "  - id: ua\n    enabled: false\n")).devices
    monkeypatch.delenv("HACKSKY_TEST_UA_PASSWORD")
    assert load_config_text(OPCUA_LOGIN, check_secrets=False).devices


def test_opcua_password_file_and_env_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HACKSKY_TEST_UA_PASSWORD", "s3cret")
    text = OPCUA_LOGIN.replace("    username: edge\n", "    username: edge\n    password_file: /x/ua.pass\n")
    with pytest.raises(ConfigError, match=r"password_env: give one of password_file or password_env, not both"):
        load_config_text(text, check_secrets=False)


def test_password_file_readable_by_others_is_warned_about_once(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "mysql.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    config = write_map(tmp_path, secret)
    with caplog.at_level(logging.WARNING, logger="agent.configload"):
        load_config(config)
        load_config(config)  # a reload does not repeat it
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (f"{config}:4:18: central.password_file: {secret} is readable by group or others "
                       f"(mode 0644): `chmod 0600 {secret}`")
    assert "s3cret" not in caplog.text
    private = tmp_path / "private.pass"
    private.write_text("s3cret\n")
    private.chmod(0o600)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agent.configload"):
        load_config(write_map(tmp_path, private))
    assert not caplog.records


def _load_as_nobody(path: Path) -> str:
    """Load ``path`` in a forked child that dropped root for ``nobody``; the error it raised (or '')."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only file permissions decide now, as for the agent's service user
        os.close(read_end)
        message = ""
        try:
            if os.geteuid() == 0:
                load_config(path)  # as root first: the modules it imports lazily live where nobody cannot read
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            load_config(path)
        except ConfigError as exc:
            message = str(exc)
        except BaseException as exc:  # the parent asserts on it
            message = f"unexpected {type(exc).__name__}: {exc}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


def test_unreadable_password_file_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    shared = tmp_path_factory.mktemp("shared")  # root's pytest directory is private: open the path
    for folder in (shared, *shared.parents):
        if folder == Path("/tmp"):
            break
        folder.chmod(folder.stat().st_mode | 0o005)
    secret = shared / "mysql.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0)
    config = write_map(shared, secret)
    config.chmod(0o644)
    assert "cannot be read by this user" in _load_as_nobody(config)


VALID = """\
gateway: {id: gw1}
devices: [{id: m, host: h, points: [{name: v, address: 0}]}]
central: {url: 'URL'}
"""


@pytest.mark.parametrize("url", [
    "mysql+pymysql://edge@db:3306/hacksky?password=s3cret",
    "mysql+pymysql://edge@db:3306/hacksky?charset=utf8mb4&passwd=s3cret",
    "mysql+pymysql://edge:s3cret@db:3306/hacksky",
])
def test_password_in_the_url_query_or_userinfo_is_refused_inline(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(VALID.replace("URL", url), "plant.yaml")
    (issue,) = info.value.issues
    assert (issue.line, issue.path) == (3, "central.url") and "secrets never go in YAML" in issue.message
    assert "s3cret" not in str(info.value)
    monkeypatch.setenv("DB_URL", url)  # from the environment it is allowed, and shown redacted
    assert load_config_text(VALID.replace("URL", "${DB_URL}")).central.url == url


def test_unparsable_url_is_refused_without_showing_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(VALID.replace("URL", "mysql+pymysql://edge:s3cret@db:port/hacksky"), "plant.yaml")
    assert "plant.yaml:3:16: central.url: 'mysql+pymysql://edge:***@db:port/hacksky' is not a database URL" \
        in str(info.value)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("mysql+pymysql://edge:s3cret@db:3306/hacksky?charset=utf8mb4&password=s3cret&passwd=s3cret",
     "mysql+pymysql://edge:***@db:3306/hacksky?charset=utf8mb4&password=***&passwd=***"),
    ("mysql+pymysql://edge@db/hacksky?pwd=s3cret", "mysql+pymysql://edge@db/hacksky?pwd=***"),
    ("sqlite:///state/hacksky.db", "sqlite:///state/hacksky.db"),
    ("mysql+pymysql://edge:s3cret@db:port/x?token=s3cret", "mysql+pymysql://edge:***@db:port/x?token=***"),
])
def test_redact_url_hides_password_and_secret_query_parameters(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redacted(make_url(url.replace(":port", ":3306")))


def test_state_file_and_status_never_show_the_url_password(tmp_path: Path) -> None:
    url = "mysql+pymysql://edge:s3cret@db:3306/hacksky?password=s3cret"
    state = {"gateway": "gw1", "pid": os.getpid(), "updated": 0.0, "readings_taken": 0, "readings_per_s": 0.0,
             "open_alerts": 0, "buffer": {"readings": 0, "events": 0, "dropped": 0},
             "central": {"url": url, "state": "up", "error": "", "rows_written": 0, "last_flush": None},
             "devices": {}}
    buf = tmp_path / "buf"
    buf.mkdir()
    write_state(buf, state)
    assert "s3cret" not in (buf / FILE_NAME).read_text()
    assert state["central"]["url"] == url, "the caller's snapshot is not changed"
    (buf / FILE_NAME).write_text(json.dumps(state))  # as an older agent wrote it
    loaded = read_state(buf)
    assert loaded is not None and loaded["central"]["url"] == "mysql+pymysql://edge:***@db:3306/hacksky?password=***"
    config = tmp_path / "plant.yaml"
    config.write_text(f"gateway: {{id: gw1}}\nbuffer: {{path: {buf}}}\n")
    result = cli("status", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "central up  mysql+pymysql://edge:***@db:3306/hacksky?password=***" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr


def test_damaged_state_file_is_named_with_line_and_column(tmp_path: Path) -> None:
    buf = tmp_path / "buf"
    buf.mkdir()
    (buf / FILE_NAME).write_text('{\n  "gateway": "gw1",\n  "pid": \n}\n')
    with pytest.raises(ConfigError) as info:
        read_state(buf)
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.column) == (str(buf / FILE_NAME), 4, 1)
    assert issue.message.startswith("not valid JSON (Expecting value)")
    config = tmp_path / "plant.yaml"
    config.write_text(f"gateway: {{id: gw1}}\nbuffer: {{path: {buf}}}\n")
    result = cli("status", "-c", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"{buf / FILE_NAME}:4:1: not valid JSON (Expecting value); "
                                          "delete it: the running agent writes a new one"]
    (buf / FILE_NAME).write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"state\.json:1:1: not a state file"):
        read_state(buf)
