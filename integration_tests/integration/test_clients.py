"""The HTTP clients (token provider, HmppsSourceApi) against the stand-ins over real HTTP, and FakeSourceApi."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from integration.clients.auth import TokenProvider
from integration.clients.fakes import FakeSourceApi
from integration.clients.hmpps import HmppsSourceApi, parse_deadline
from integration.clients.http import (
    DEFAULT_DEADLINE,
    DEFAULT_TIMEOUT,
    Deadline,
    RetryPolicy,
    build_session,
    origin_of,
    parse_allowlist,
)
from integration.core.ports import DetailUrlNotAllowed, SourceApi, UpstreamError
from integration.local.standins import StandIns, make_alert, make_case_note
from integration.resources import HmppsApis
from integration_tests.fixtures.network import free_port

SECRET = "s3cr3t-value-never-shown"
TYPES = [{"type": "PRISON", "subTypes": ["RELEASE"]}, {"type": "KA", "subTypes": []}]


@pytest.fixture
def stands(standins: StandIns) -> StandIns:
    standins.configure_auth(client_secret=SECRET)
    return standins


def make_api(standins: StandIns, **overrides) -> HmppsSourceApi:
    options = {"timeout": (1.0, 0.5), "total_retries": 2, "backoff_factor": 0.001}
    options.update(overrides)
    return HmppsSourceApi(
        standins.auth_url, standins.client_id, SECRET, standins.case_notes_url, standins.alerts_url, **options
    )


@pytest.fixture
def api(stands: StandIns):
    with make_api(stands) as client:
        yield client


# --- tokens -------------------------------------------------------------------------------------------------------
def test_token_is_cached_across_many_calls(stands: StandIns, api: HmppsSourceApi, caplog) -> None:
    note = stands.add_case_note()
    alert = stands.add_alert()
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    for _ in range(10):
        assert api.get_case_note(stands.case_note_url(note))["caseNoteId"] == note["caseNoteId"]
        assert api.get_alert(stands.alert_url(alert))["alertUuid"] == alert["alertUuid"]
    assert stands.tokens_issued == 1
    assert api.stats() == {"case_notes_calls": 10, "alerts_calls": 10, "token_fetches": 1}
    # Connections are kept alive: one per origin (the token endpoint's included), not one per call.
    assert sum("Starting new HTTP connection" in r.getMessage() for r in caplog.records) == 3


def test_token_is_refreshed_near_expiry(stands: StandIns) -> None:
    now = [1000.0]
    provider = TokenProvider(stands.auth_url, stands.client_id, SECRET, clock=lambda: now[0])
    first = provider.get_token()
    now[0] += 1199 - 61
    assert provider.get_token() == first and stands.tokens_issued == 1
    now[0] += 2  # now within 60 s of expiry
    assert provider.get_token() != first and stands.tokens_issued == 2


def test_short_lived_tokens_are_kept_for_half_their_life(stands: StandIns) -> None:
    stands.configure_auth(expires_in=10)
    now = [0.0]
    provider = TokenProvider(stands.auth_url, stands.client_id, SECRET, clock=lambda: now[0])
    provider.get_token()
    now[0] = 4.9
    provider.get_token()
    assert stands.tokens_issued == 1
    now[0] = 5.1
    provider.get_token()
    assert stands.tokens_issued == 2


def test_concurrent_callers_cause_one_fetch(stands: StandIns) -> None:
    stands.set_fault("token", latency_ms=300)  # slow Auth: everyone piles up behind the first fetch
    provider = TokenProvider(stands.auth_url, stands.client_id, SECRET)
    barrier = threading.Barrier(16)

    def get() -> str:
        barrier.wait()
        return provider.get_token()

    with ThreadPoolExecutor(16) as pool:
        tokens = list(pool.map(lambda _: get(), range(16)))
    assert len(set(tokens)) == 1
    assert stands.tokens_issued == 1 and stands.requests("token") == 1


def test_concurrent_callers_share_one_failed_fetch(stands: StandIns) -> None:
    stands.set_fault("token", status=400, latency_ms=300)
    provider = TokenProvider(stands.auth_url, stands.client_id, SECRET, total_retries=0)
    barrier = threading.Barrier(8)

    def get() -> str:
        barrier.wait()
        try:
            return provider.get_token()
        except UpstreamError as exc:
            return exc.reason

    with ThreadPoolExecutor(8) as pool:
        reasons = list(pool.map(lambda _: get(), range(8)))
    assert set(reasons) == {"HMPPS Auth token request failed: HTTP 400"}
    assert stands.requests("token") == 1
    stands.clear_faults()
    assert provider.get_token()  # a later caller tries again


def test_invalidate_only_drops_the_given_token(stands: StandIns) -> None:
    provider = TokenProvider(stands.auth_url, stands.client_id, SECRET)
    first = provider.get_token()
    provider.invalidate("some-other-token")
    assert provider.get_token() == first
    provider.invalidate(first)
    assert provider.get_token() != first
    assert stands.tokens_issued == 2


def test_token_failures_are_retryable_upstream_errors_without_secrets(stands: StandIns) -> None:
    provider = TokenProvider(stands.auth_url, stands.client_id, SECRET, total_retries=2, backoff_factor=0.001)
    stands.set_fault("token", status=503)
    with pytest.raises(UpstreamError) as outage:
        provider.get_token()
    assert outage.value.status == 503 and outage.value.retryable
    assert stands.requests("token") == 3  # retried by the adapter

    stands.set_fault("token", malformed=True)
    with pytest.raises(UpstreamError) as malformed:
        provider.get_token()
    stands.clear_faults()
    wrong = TokenProvider(stands.auth_url, stands.client_id, "wrong-secret")
    with pytest.raises(UpstreamError) as rejected:
        wrong.get_token()
    assert rejected.value.status == 401
    for error in (outage.value, malformed.value, rejected.value):
        assert SECRET not in str(error) and "wrong-secret" not in str(error)
        assert "HMPPS Auth" in error.reason
    assert SECRET not in repr(provider)


def test_debug_logging_never_shows_the_secret_or_token(stands: StandIns, api: HmppsSourceApi, caplog) -> None:
    # Every logger at DEBUG, whatever an earlier test or library set on them (urllib3's is often raised to WARNING).
    caplog.set_level(logging.DEBUG)
    # urllib3's own logger too: kubernetes' client Configuration() (loaded by earlier tests in the same session, via
    # dagster-k8s) sets it to WARNING, and then nothing reaches the root logger's DEBUG level.
    for name in ("urllib3", "urllib3.connectionpool", "integration"):
        caplog.set_level(logging.DEBUG, logger=name)
    note = stands.add_case_note(text="private note text")
    stands.set_fault("get_case_note", status=503, times=1)
    assert api.get_case_note(stands.case_note_url(note)) is not None
    token = api.tokens.get_token()
    assert caplog.records  # urllib3 did log at DEBUG
    for text in (SECRET, token, "private note text"):
        assert text not in caplog.text


def test_token_endpoint_unreachable(stands: StandIns) -> None:
    provider = TokenProvider(f"http://127.0.0.1:{free_port()}/auth", "id", SECRET, total_retries=0)
    with pytest.raises(UpstreamError, match="cannot connect to HMPPS Auth"):
        provider.get_token()


# --- 401 / 403 ----------------------------------------------------------------------------------------------------
def test_401_refreshes_the_token_once_and_retries(stands: StandIns, api: HmppsSourceApi) -> None:
    note = stands.add_case_note()
    api.get_case_note(stands.case_note_url(note))
    stands.rotate_keys()  # the cached token is now rejected
    assert api.get_case_note(stands.case_note_url(note))["caseNoteId"] == note["caseNoteId"]
    assert stands.tokens_issued == 2
    assert [e["status"] for e in stands.request_log("get_case_note")] == [200, 401, 200]


def test_second_401_is_an_upstream_error(stands: StandIns, api: HmppsSourceApi) -> None:
    alert = stands.add_alert()
    stands.set_fault("get_alert", status=401)
    with pytest.raises(UpstreamError) as error:
        api.get_alert(stands.alert_url(alert))
    assert error.value.status == 401 and error.value.retryable
    assert stands.requests("get_alert") == 2 and stands.tokens_issued == 2


def test_403_is_an_upstream_error(stands: StandIns, api: HmppsSourceApi) -> None:
    stands.configure_auth(authorities=["ROLE_PRISONER_ALERTS__RO"])
    note = stands.add_case_note()
    with pytest.raises(UpstreamError) as error:
        api.get_case_note(stands.case_note_url(note))
    assert error.value.status == 403
    assert stands.requests("get_case_note") == 1


# --- retries, 404, timeouts -----------------------------------------------------------------------------------------
def test_5xx_is_retried_then_succeeds(stands: StandIns) -> None:
    note = stands.add_case_note()
    with make_api(stands, total_retries=3) as api:
        stands.set_fault("get_case_note", status=503, times=2)
        assert api.get_case_note(stands.case_note_url(note))["caseNoteId"] == note["caseNoteId"]
        assert stands.requests("get_case_note") == 3
        stands.set_fault("search_case_notes", status=502, times=1)  # the read-only POST is retried too
        assert len(api.search_case_notes("A1234BC", [])) == 1
        assert stands.requests("search_case_notes") == 2


def test_persistent_503_is_a_retryable_upstream_error(stands: StandIns, api: HmppsSourceApi) -> None:
    alert = stands.add_alert()
    stands.set_fault("get_alert", status=503)
    with pytest.raises(UpstreamError) as error:
        api.get_alert(stands.alert_url(alert))
    assert error.value.status == 503 and error.value.retryable
    assert "alerts API" in error.value.reason
    assert stands.requests("get_alert") == 3  # first try + total_retries=2


def test_404_is_none(stands: StandIns, api: HmppsSourceApi) -> None:
    note = make_case_note("A1234BC")
    alert = make_alert("A1234BC")
    assert api.get_case_note(stands.case_note_url(note)) is None
    assert api.get_alert(stands.alert_url(alert)) is None
    assert stands.requests("get_case_note") == stands.requests("get_alert") == 1  # 404 is not retried


@pytest.mark.parametrize(
    "make_url",
    [
        lambda s, path: f"http://evil.example{path}",
        lambda s, path: f"http://127.0.0.1:{free_port()}{path}",
        lambda s, path: f"https://{s.case_notes_url.split('://')[1]}{path}",  # right host, wrong scheme
        lambda s, path: f"http://{s.case_notes_url.split('://')[1]}@evil.example{path}",
        lambda s, path: f"{s.case_notes_url}\\@evil.example{path}",
        lambda s, path: "file:///etc/passwd",
        lambda s, path: "not a url",
    ],
)
def test_allowlist_violation_raises_and_sends_nothing(stands: StandIns, api: HmppsSourceApi, make_url) -> None:
    url = make_url(stands, "/case-notes/A1234BC/0ec15f8b-6b57-471f-b02a-c89169a6a3e5")
    with pytest.raises(DetailUrlNotAllowed) as error:
        api.get_case_note(url)
    with pytest.raises(DetailUrlNotAllowed):
        api.get_alert(url)
    assert error.value.retryable is False
    assert "A1234BC" not in str(error.value) and "0ec15f8b" not in str(error.value)  # origin only
    assert stands.requests() == 0 and stands.tokens_issued == 0


def test_allowlist_message_names_the_origin(api: HmppsSourceApi) -> None:
    with pytest.raises(DetailUrlNotAllowed, match=r"^detailUrl host not on the allow-list: https://evil\.example$"):
        api.get_alert("HTTPS://Evil.Example:443/alerts/0ec15f8b-6b57-471f-b02a-c89169a6a3e5")


def test_configured_allowlist_is_normalised(stands: StandIns) -> None:
    note = stands.add_case_note()
    host_port = stands.case_notes_url.split("://")[1]
    with make_api(stands, allowlist=f" HTTP://{host_port.upper()}/ ,https://other.example:443") as api:
        assert api.allowlist == {f"http://{host_port}", "https://other.example"}
        assert api.get_case_note(stands.case_note_url(note)) is not None
        with pytest.raises(DetailUrlNotAllowed):  # the alerts origin is no longer allowed
            api.get_alert(stands.alert_url(stands.add_alert()))


def test_origin_helpers() -> None:
    assert origin_of("https://Case-Notes.example:443/x?y=1") == "https://case-notes.example"
    assert origin_of("http://h.example:80") == "http://h.example"
    assert origin_of("http://h.example:8080/p") == "http://h.example:8080"
    assert origin_of("http://[::1]:9/") == "http://[::1]:9"
    assert parse_allowlist("https://a.example, ,http://b.example:81,https://a.example/") == [
        "https://a.example",
        "http://b.example:81",
    ]
    with pytest.raises(ValueError, match="ftp://x"):
        parse_allowlist("ftp://x")


def test_read_timeout_is_an_upstream_error(stands: StandIns) -> None:
    note = stands.add_case_note()
    stands.set_fault("get_case_note", latency_ms=800)
    with make_api(stands, timeout=(1.0, 0.2), total_retries=1) as api:
        with pytest.raises(UpstreamError, match="^timeout calling case notes API$") as error:
            api.get_case_note(stands.case_note_url(note))
    assert error.value.retryable and error.value.status is None
    assert stands.requests("get_case_note") == 2


def test_one_read_timeout_is_retried(stands: StandIns) -> None:
    alert = stands.add_alert()
    stands.set_fault("get_alert", latency_ms=800, times=1)
    with make_api(stands, timeout=(1.0, 0.2), total_retries=1) as api:
        assert api.get_alert(stands.alert_url(alert))["alertUuid"] == alert["alertUuid"]
    assert stands.requests("get_alert") == 2


def test_connection_refused_is_an_upstream_error(stands: StandIns) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with make_api(stands, total_retries=1, allowlist=[closed]) as api:
        api.case_notes_url = closed
        with pytest.raises(UpstreamError, match="^cannot connect to case notes API$"):
            api.get_case_note(f"{closed}/case-notes/A1234BC/1")


def test_invalid_json_is_an_upstream_error(stands: StandIns, api: HmppsSourceApi) -> None:
    note = stands.add_case_note()
    stands.set_fault("get_case_note", malformed=True)
    with pytest.raises(UpstreamError, match="invalid JSON"):
        api.get_case_note(stands.case_note_url(note))
    stands.set_fault("person_alerts", body="[1, 2]", status=200)
    with pytest.raises(UpstreamError, match="not an object"):
        api.get_person_alerts("A1234BC")


# --- search and person alerts ---------------------------------------------------------------------------------------
ONE_PAGE = 2147483647


def test_search_reads_one_page_with_the_reference_body(stands: StandIns, api: HmppsSourceApi) -> None:
    wanted = [
        stands.add_case_note(
            "A1234BC", type="KA", sub_type="KS", occurred_at=f"2025-01-{d:02d}T08:00:00", sensitive=d % 5 == 0
        )
        for d in range(1, 26)
    ]
    wanted.append(stands.add_case_note("A1234BC", type="PRISON", sub_type="RELEASE", occurred_at="2025-02-01T08:00"))
    stands.add_case_note("A1234BC", type="PRISON", sub_type="OTHER")
    stands.add_case_note("B9999ZZ", type="KA", sub_type="KS")
    notes = api.search_case_notes("a1234bc", TYPES)
    assert [n["caseNoteId"] for n in notes] == [n["caseNoteId"] for n in wanted]  # oldest first, sensitive too
    assert stands.search_requests == [
        {
            "person": "A1234BC",
            "body": {
                "typeSubTypes": TYPES,
                "includeSensitive": True,
                "page": 1,
                "size": ONE_PAGE,
                "sort": "occurredAt,desc",
            },
        }
    ]
    assert api.search_case_notes("C0000CC", TYPES) == []


def test_three_thousand_notes_with_equal_sort_keys_lose_none(stands: StandIns, api: HmppsSourceApi) -> None:
    """The search sorts on one user-entered time with no tie-breaker: pages of equal keys overlap and leave gaps.
    The stand-in shuffles ties afresh per request; reading the person in one page loses nothing."""
    stands.set_tie_seed(20261130)
    same = "2025-03-01T09:00:00"
    ids = {
        n["caseNoteId"]
        for n in stands.store.put_case_notes(
            make_case_note("A1234BC", type="KA", sub_type="KS", occurred_at=same, created_at=same) for _ in range(3000)
        )
    }

    token = stands.issue_token()
    paged: set[str] = set()
    for page in (1, 2, 3):  # what paging 1,000 at a time would have read
        body = {"typeSubTypes": TYPES, "includeSensitive": True, "page": page, "size": 1000}
        answer = requests.post(
            f"{stands.case_notes_url}/search/case-notes/A1234BC",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).json()
        assert answer["metadata"]["totalElements"] == 3000
        paged.update(n["caseNoteId"] for n in answer["content"])
    assert len(paged) < 3000  # the stand-in reproduces the loss

    stands.clear_requests()
    notes = api.search_case_notes("A1234BC", TYPES)
    assert len(notes) == 3000 and {n["caseNoteId"] for n in notes} == ids
    assert stands.requests("search_case_notes") == 1


def test_a_paged_read_that_comes_back_short_fails_instead_of_losing_notes(stands: StandIns) -> None:
    stands.set_tie_seed(7)
    same = "2025-03-01T09:00:00"
    stands.store.put_case_notes(
        make_case_note("A1234BC", type="KA", sub_type="KS", occurred_at=same, created_at=same) for _ in range(3000)
    )
    with make_api(stands, page_size=1000) as api:
        with pytest.raises(UpstreamError, match=r"distinct case notes of 3000 in 3 reads") as error:
            api.search_case_notes("A1234BC", TYPES)
        assert error.value.retryable and api.rereads == 2
    assert stands.requests("search_case_notes") == 9  # three reads of three pages, then a retryable failure


def test_a_short_read_is_read_again(stands: StandIns, api: HmppsSourceApi) -> None:
    notes = [stands.add_case_note(type="KA", sub_type="KS") for _ in range(2)]
    short = {"content": [notes[0]], "metadata": {"totalElements": 2, "page": 1, "size": ONE_PAGE}, "hasCaseNotes": True}
    stands.set_fault("search_case_notes", status=200, body=json.dumps(short), times=1)
    assert {n["caseNoteId"] for n in api.search_case_notes("A1234BC", TYPES)} == {n["caseNoteId"] for n in notes}
    assert stands.requests("search_case_notes") == 2 and api.rereads == 1


def test_search_pages_on_distinct_keys_when_asked_to(stands: StandIns) -> None:
    for day in range(1, 21):
        stands.add_case_note(type="KA", sub_type="KS", occurred_at=f"2025-01-{day:02d}T08:00:00")
    with make_api(stands, page_size=10) as api:
        assert len(api.search_case_notes("A1234BC", TYPES)) == 20
    assert [r["body"]["page"] for r in stands.search_requests] == [1, 2]


def test_search_errors_are_upstream_errors(stands: StandIns, api: HmppsSourceApi) -> None:
    stands.set_fault("search_case_notes", status=400)
    with pytest.raises(UpstreamError) as error:
        api.search_case_notes("A1234BC", TYPES)
    assert error.value.status == 400


def test_person_alerts_in_one_page_active_and_inactive(stands: StandIns, api: HmppsSourceApi) -> None:
    stands.set_tie_seed(3)
    alerts = [stands.add_alert("A1234BC", code="VI", active_from="2025-01-01") for _ in range(300)]  # equal keys
    alerts += [
        stands.store.put_alert(make_alert("A1234BC", code="PEEP", active_from="2024-01-01", active_to="2024-06-01"))
        for _ in range(2)
    ]
    stands.add_alert("B9999ZZ")
    got = api.get_person_alerts("a1234bc")
    assert sorted(a["alertUuid"] for a in got) == sorted(a["alertUuid"] for a in alerts)
    assert {a["isActive"] for a in got} == {True, False}  # active and inactive
    log = stands.request_log("person_alerts")
    assert [(e["path"], e["query"]) for e in log] == [("/prisoners/A1234BC/alerts", f"page=0&size={ONE_PAGE}")]


def test_person_alerts_can_page_on_distinct_keys(stands: StandIns) -> None:
    alerts = [stands.add_alert("A1234BC", active_from=f"2025-01-{day:02d}") for day in range(1, 8)]
    with make_api(stands, alerts_page_size=3) as api:
        got = api.get_person_alerts("A1234BC")
    assert sorted(a["alertUuid"] for a in got) == sorted(a["alertUuid"] for a in alerts)
    assert [e["query"] for e in stands.request_log("person_alerts")] == [
        "page=0&size=3",
        "page=1&size=3",
        "page=2&size=3",
    ]


def test_concurrent_fetches_share_one_token(stands: StandIns, api: HmppsSourceApi) -> None:
    notes = [stands.add_case_note(f"A{n:04d}BC") for n in range(40)]
    with ThreadPoolExecutor(8) as pool:
        fetched = list(pool.map(lambda n: api.get_case_note(stands.case_note_url(n)), notes))
    assert [f["caseNoteId"] for f in fetched] == [n["caseNoteId"] for n in notes]
    assert stands.tokens_issued == 1 and api.http_calls == 40


# --- construction -------------------------------------------------------------------------------------------------
def test_the_resource_configures_the_client_and_session_defaults(stands: StandIns, monkeypatch) -> None:
    def resource() -> HmppsApis:
        return HmppsApis(
            auth_url=stands.auth_url,
            client_id=stands.client_id,
            client_secret=SECRET,
            case_notes_url=stands.case_notes_url + "/",
            alerts_url=stands.alerts_url,
        )

    monkeypatch.delenv("DETAIL_URL_ALLOWLIST", raising=False)
    monkeypatch.delenv("HMPPS_API_DEADLINE_SECONDS", raising=False)
    with resource().client() as api:
        assert api.allowlist == {origin_of(stands.case_notes_url), origin_of(stands.alerts_url)}
        assert api.timeout == DEFAULT_TIMEOUT == (3.05, 10)
        assert api.deadline == DEFAULT_DEADLINE == 15.0 and api.search_deadline == 60.0
        assert api.tokens.token_url == f"{stands.auth_url}/oauth/token"
        assert SECRET not in repr(api)
    monkeypatch.setenv("DETAIL_URL_ALLOWLIST", "https://x.example")
    monkeypatch.setenv("HMPPS_API_DEADLINE_SECONDS", "7.5")
    with resource().client() as api:
        assert api.allowlist == {"https://x.example"}
        assert api.deadline == 7.5 and api.search_deadline == 30.0
    for bad in ("soon", "0", "-1", "inf"):  # a bad value is logged and the default used
        with pytest.raises(ValueError, match="HMPPS_API_DEADLINE_SECONDS"):
            parse_deadline(bad)
        monkeypatch.setenv("HMPPS_API_DEADLINE_SECONDS", bad)
        with resource().client() as api:
            assert api.deadline == DEFAULT_DEADLINE

    session = build_session(pool_size=8)
    adapter = session.get_adapter("https://x.example")
    retry = adapter.max_retries
    assert (retry.total, retry.redirect) == (0, False)  # retries happen in send(), within the deadline
    assert isinstance(session, requests.Session) and session.headers["Accept"] == "application/json"
    assert RetryPolicy() == RetryPolicy(total_retries=3, backoff_factor=0.1, retry_after_max=10)
    assert [RetryPolicy().pause(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert RetryPolicy().pause(1, "3") == 3 and RetryPolicy().pause(1, "600") == 10
    assert RetryPolicy().pause(2, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.2


# --- the token request ----------------------------------------------------------------------------------------------
def test_token_request_is_a_form_post_with_basic_auth_and_no_environment_change(stands: StandIns, monkeypatch) -> None:
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    provider = TokenProvider(stands.auth_url, stands.client_id, SECRET)  # plain http, as the local stack
    assert provider.get_token()
    [entry] = stands.request_log("token")
    assert (entry["method"], entry["path"], entry["query"], entry["status"]) == ("POST", "/auth/oauth/token", "", 200)
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ
    with pytest.raises(ValueError, match="HMPPS_AUTH_URL"):
        TokenProvider("ftp://auth.example/auth", "id", SECRET)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_token_request_follows_no_redirect(stands: StandIns, status: int) -> None:
    """A redirect from the token endpoint is an error: the other host never sees the credentials, and no token it
    could hand out is ever used."""
    with StandIns.start(client_secret=SECRET) as elsewhere:
        stands.set_fault(
            "token", status=status, location=f"{elsewhere.auth_url}/oauth/token?grant_type=client_credentials"
        )
        with make_api(stands) as api:
            with pytest.raises(UpstreamError, match=rf"token request was redirected \(HTTP {status}\)") as error:
                api.get_case_note(stands.case_note_url(stands.add_case_note()))
        assert error.value.retryable and error.value.status == status
        assert elsewhere.requests() == 0 and elsewhere.tokens_issued == 0
        assert stands.requests("token") == 1 and stands.requests("get_case_note") == 0


def test_token_response_must_be_a_bearer_token(stands: StandIns) -> None:
    provider = TokenProvider(stands.auth_url, stands.client_id, SECRET)
    stands.set_fault("token", status=200, body=json.dumps({"access_token": "x", "token_type": "mac"}))
    with pytest.raises(UpstreamError, match="not a bearer token"):
        provider.get_token()
    stands.set_fault("token", status=200, body="[" * 100_000)  # nested too deep for the parser
    with pytest.raises(UpstreamError, match="not valid JSON"):
        provider.get_token()


# --- the deadline ---------------------------------------------------------------------------------------------------
def hung_api(stands: StandIns, **overrides) -> HmppsSourceApi:
    """A client whose read timeout is far beyond its deadline: only the deadline can end a hung call early."""
    options = {"timeout": (5.0, 120.0), "deadline": 1.0, "total_retries": 3}
    options.update(overrides)
    return make_api(stands, **options)


def test_a_hung_api_fails_retryably_within_the_deadline(stands: StandIns) -> None:
    note = stands.add_case_note()
    with hung_api(stands) as api:
        api.tokens.get_token()
        stands.set_fault("get_case_note", hang=True)
        with pytest.raises(UpstreamError, match="^timeout calling case notes API$") as error:
            api.get_case_note(stands.case_note_url(note))
        assert error.value.retryable and error.value.status is None
        # The stand-in is still holding the request: the client gave up on its deadline, not on an answer.
        assert [e["status"] for e in stands.request_log("get_case_note")] == [None]
        stands.clear_faults()
        assert api.get_case_note(stands.case_note_url(note))["caseNoteId"] == note["caseNoteId"]


def test_a_hung_attempt_is_retried_while_the_deadline_allows(stands: StandIns) -> None:
    alert = stands.add_alert()
    stands.set_fault("get_alert", hang=True, times=1)
    with make_api(stands, timeout=(5.0, 2.0), deadline=60.0) as api:
        assert api.get_alert(stands.alert_url(alert))["alertUuid"] == alert["alertUuid"]
    assert stands.requests("get_alert") == 2


def test_a_hung_search_fails_within_its_deadline(stands: StandIns) -> None:
    stands.add_case_note(type="KA", sub_type="KS")
    with hung_api(stands, search_deadline=1.0) as api:
        api.tokens.get_token()
        stands.set_fault("search_case_notes", hang=True)
        with pytest.raises(UpstreamError, match="^timeout calling case notes API$"):
            api.search_case_notes("A1234BC", TYPES)
    assert stands.requests("search_case_notes") == 1


def test_a_hung_auth_fails_the_fetch_within_its_deadline(stands: StandIns) -> None:
    note = stands.add_case_note()
    stands.set_fault("token", hang=True)
    with hung_api(stands) as api:
        with pytest.raises(UpstreamError, match="^timeout calling HMPPS Auth for a token$") as error:
            api.get_case_note(stands.case_note_url(note))
    assert error.value.retryable
    assert stands.requests("token") == 1 and stands.requests("get_case_note") == 0


def test_waiting_for_another_thread_s_token_fetch_keeps_to_the_deadline(stands: StandIns) -> None:
    stands.set_fault("token", hang=True)
    provider = TokenProvider(stands.auth_url, stands.client_id, SECRET, timeout=(5.0, 120.0), deadline=60.0)
    tokens: list[str] = []
    holder = threading.Thread(target=lambda: tokens.append(provider.get_token()), daemon=True)
    holder.start()
    while stands.requests("token") == 0:  # the holder's fetch is under way and holds the lock
        time.sleep(0.01)
    with pytest.raises(UpstreamError, match="^timeout waiting for a token from HMPPS Auth$"):
        provider.get_token(Deadline(0.5))
    stands.clear_faults()  # the held request is answered 503, and the holder's retry gets a token
    holder.join(timeout=60)
    assert tokens and stands.requests("token") == 2


class _TricklingServer:
    """Answers 200 with a long body, one byte at a time, so no single read ever times out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
                for _ in range(100_000):
                    if self.stop.wait(0.05):
                        return
                    conn.sendall(b" ")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_trickling_answer_is_cut_at_the_deadline(stands: StandIns) -> None:
    server = _TricklingServer()
    try:
        with hung_api(stands, allowlist=[server.url], timeout=(5.0, 30.0)) as api:
            with pytest.raises(UpstreamError, match="^timeout calling alerts API$"):
                api.get_alert(f"{server.url}/alerts/0ec15f8b-6b57-471f-b02a-c89169a6a3e5")
        assert server.connections == 1
    finally:
        server.close()


def test_retry_after_beyond_the_deadline_is_not_waited_for(stands: StandIns) -> None:
    note = stands.add_case_note()
    stands.set_fault("get_case_note", status=503, retry_after=10)
    with make_api(stands, deadline=2.0, total_retries=3) as api:
        with pytest.raises(UpstreamError, match="answered HTTP 503") as error:
            api.get_case_note(stands.case_note_url(note))
    assert error.value.status == 503 and stands.requests("get_case_note") == 1


def test_an_api_that_keeps_timing_out_is_not_called_for_a_while(stands: StandIns) -> None:
    now = [1000.0]
    alert = stands.add_alert()
    note = stands.add_case_note()
    with hung_api(stands, breaker_threshold=2, breaker_cooldown=30, clock=lambda: now[0]) as api:
        api.tokens.get_token()
        stands.set_fault("get_alert", hang=True)
        for _ in range(2):
            with pytest.raises(UpstreamError, match="^timeout calling alerts API$"):
                api.get_alert(stands.alert_url(alert))
        with pytest.raises(UpstreamError, match=r"^alerts API not called: its last 2 fetches timed out") as fast:
            api.get_alert(stands.alert_url(alert))
        assert fast.value.retryable
        assert stands.requests("get_alert") == 2  # the third call sent nothing
        assert api.get_case_note(stands.case_note_url(note)) is not None  # the other API is still called

        stands.clear_faults()
        now[0] += 31  # after the pause the API is tried again, and an answer closes the breaker
        assert api.get_alert(stands.alert_url(alert))["alertUuid"] == alert["alertUuid"]
        assert api.get_alert(stands.alert_url(alert)) is not None
    assert stands.requests("get_alert") == 4


def test_a_hung_auth_is_not_called_for_a_while(stands: StandIns) -> None:
    now = [0.0]
    stands.set_fault("token", hang=True)
    provider = TokenProvider(
        stands.auth_url,
        stands.client_id,
        SECRET,
        timeout=(5.0, 120.0),
        deadline=0.5,
        breaker_threshold=1,
        breaker_cooldown=30,
        clock=lambda: now[0],
    )
    with pytest.raises(UpstreamError, match="timeout calling HMPPS Auth"):
        provider.get_token()
    with pytest.raises(UpstreamError, match="^HMPPS Auth not called"):
        provider.get_token()
    assert stands.requests("token") == 1
    stands.clear_faults()
    now[0] += 31
    assert provider.get_token() and stands.requests("token") == 2


# --- FakeSourceApi ----------------------------------------------------------------------------------------------------
def test_fake_source_api_basics() -> None:
    fake = FakeSourceApi()
    assert isinstance(fake, SourceApi)
    release = make_case_note("A1234BC", type="PRISON", sub_type="RELEASE", occurred_at="2025-01-02T00:00:00")
    ka = make_case_note("A1234BC", type="KA", sub_type="KS", occurred_at="2025-01-01T00:00:00")
    other = make_case_note("A1234BC", type="PRISON", sub_type="OTHER")
    urls = [fake.add_case_note(n) for n in (release, ka, other)]
    alert = make_alert("A1234BC")
    alert_url = fake.add_alert(alert)

    assert fake.get_case_note(urls[0]) == release
    fake.get_case_note(urls[0])["text"] = "mutated"
    assert fake.get_case_note(urls[0])["text"] == release["text"]  # copies
    assert fake.get_case_note("http://case-notes.fake/case-notes/A1234BC/nope") is None
    assert fake.get_alert(alert_url) == alert
    assert [n["caseNoteId"] for n in fake.search_case_notes("a1234bc", TYPES)] == [
        ka["caseNoteId"],
        release["caseNoteId"],
    ]
    assert fake.get_person_alerts("A1234BC") == [alert]
    assert fake.get_person_alerts("B9999ZZ") == []

    updated = dict(release, text="second version")
    fake.add_case_note(updated)
    assert fake.get_case_note(urls[0])["text"] == "second version"
    assert len(fake.case_notes_by_person["A1234BC"]) == 3
    fake.remove_alert(alert["alertUuid"])
    assert fake.get_alert(alert_url) is None

    fake.raise_for(urls[1], UpstreamError("boom", 503), times=1)
    with pytest.raises(UpstreamError):
        fake.get_case_note(urls[1])
    assert fake.get_case_note(urls[1]) is not None
    fake.raise_for("a1234bc", UpstreamError("search down"))
    with pytest.raises(UpstreamError):
        fake.search_case_notes("A1234BC", TYPES)
    fake.clear_errors()
    assert fake.calls_to("search_case_notes")[0] == ("A1234BC", TYPES)
    assert fake.calls_to("get_person_alerts") == ["A1234BC", "B9999ZZ"]

    strict = FakeSourceApi(allowlist="http://case-notes.fake")
    with pytest.raises(DetailUrlNotAllowed):
        strict.get_alert("http://alerts.fake/alerts/x")
