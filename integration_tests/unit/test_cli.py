"""The operator command lines: what they send to the webserver, what they print (run id and link), and one-line
errors with exit code 2 when the URL is missing, wrong or unreachable. HTTP is replaced: no network."""

from __future__ import annotations

import pytest
import requests

from integration.cli import backfill, redrive, webserver

URL = "http://dagster.test:3000"
WORKSPACE = {
    "workspaceOrError": {
        "__typename": "Workspace",
        "locationEntries": [
            {
                "name": "integration",
                "loadStatus": "LOADED",
                "locationOrLoadError": {
                    "__typename": "RepositoryLocation",
                    "repositories": [{"name": "__repository__"}],
                },
            }
        ],
    }
}


class FakeWebserver:
    def __init__(self):
        self.launched: list[dict] = []

    def post(self, url, json=None, timeout=None):
        assert url == f"{URL}/graphql"
        if "workspaceOrError" in json["query"]:
            return Answer({"data": WORKSPACE})
        if "launchRun" in json["query"]:
            self.launched.append(json["variables"]["params"])
            return Answer(
                {
                    "data": {
                        "launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": f"run-{len(self.launched)}"}}
                    }
                }
            )
        if "runOrError" in json["query"]:
            return Answer({"data": {"runOrError": {"__typename": "Run", "status": "SUCCESS"}}})
        raise AssertionError(json["query"])


class Answer:
    def __init__(self, body, status=200):
        self.body, self.status_code = body, status

    def json(self):
        if isinstance(self.body, str):
            raise ValueError(self.body)
        return self.body


@pytest.fixture
def server(monkeypatch):
    fake = FakeWebserver()
    monkeypatch.setattr(webserver.requests, "post", fake.post)
    return fake


def test_backfill_launches_noms_backfill_job_runs_of_at_most_100_people_and_prints_their_ids(server, capsys):
    people = [f"A{n:04d}BC" for n in range(150)]
    assert backfill.main(["--url", URL, "--wait", *people, people[0].lower()]) == 0
    first, second = server.launched
    assert first["selector"]["jobName"] == "noms_backfill_job"
    assert first["runConfigData"]["ops"]["backfill_people"]["config"]["noms_numbers"] == people[:100]
    assert len(second["runConfigData"]["ops"]["backfill_people"]["config"]["noms_numbers"]) == 50
    tags = {t["key"]: t["value"] for t in first["executionMetadata"]["tags"]}
    assert tags == {"hmpps/trigger": "cli", "hmpps/people": "100 people"}
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"noms_backfill_job run run-1 launched for 100 people: {URL}/runs/run-1"
    assert out[-1] == "noms_backfill_job run run-2: SUCCESS"


def test_redrive_launches_the_redrive_or_peek_job_and_prints_the_run_id(server, capsys):
    assert redrive.main(["--url", URL, "--park-after", "0"]) == 0
    assert redrive.main(["--url", URL, "--peek", "--max-messages", "5", "--wait"]) == 0
    redrive_params, peek_params = server.launched
    assert redrive_params["selector"]["jobName"] == "redrive_dlq_job"
    assert redrive_params["runConfigData"] == {"ops": {"redrive_dead_letters": {"config": {"park_after": 0}}}}
    assert peek_params["runConfigData"] == {"ops": {"peek_dead_letters": {"config": {"max_messages": 5}}}}
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"redrive_dlq_job run run-1 launched: {URL}/runs/run-1"
    assert out[1] == f"peek_dlq_job run run-2 launched: {URL}/runs/run-2"


@pytest.mark.parametrize(
    "answer, expected",
    [
        (requests.ConnectionError("refused"), "cannot reach the Dagster webserver at"),
        (Answer("<html>", 404), "answered HTTP 404"),
        (Answer("<html>"), "did not answer JSON"),
        (
            Answer({"errors": [{"message": "Field 'x' not found\nmore"}]}),
            "the webserver refused the request: Field 'x'",
        ),
    ],
)
@pytest.mark.parametrize("command", [backfill.main, redrive.main])
def test_errors_are_one_line_and_exit_code_2(monkeypatch, capsys, command, answer, expected):
    def post(*_args, **_kwargs):
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(webserver.requests, "post", post)
    argv = ["--url", URL] + (["A1234BC"] if command is backfill.main else [])
    assert command(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and expected in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_a_missing_or_invalid_argument_is_one_line_too(monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_UI_URL", raising=False)
    assert backfill.main(["--url", "dagster:3000", "A1234BC"]) == 2
    assert backfill.main(["--url", URL, "A1234B", "hello"]) == 2
    assert backfill.main(["--url", URL]) == 2
    assert redrive.main(["--url", URL, "--max-messages", "-1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: --url 'dagster:3000' is not an http(s) URL of the Dagster webserver",
        "error: not NOMS numbers: A1234B, HELLO (a NOMS number is like A1234BC)",
        "error: no NOMS numbers given",
        "error: --max-messages and --park-after cannot be negative",
    ]


def test_the_url_defaults_to_dagster_ui_url(monkeypatch):
    monkeypatch.setenv("DAGSTER_UI_URL", "https://dagster.example/ ")
    assert webserver.default_url() == "https://dagster.example/"
    monkeypatch.delenv("DAGSTER_UI_URL")
    assert webserver.default_url() == "http://127.0.0.1:3000"
