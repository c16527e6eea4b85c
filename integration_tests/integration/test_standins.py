"""The stand-in HMPPS Auth, Case Notes API and Alerts API, over real HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import date, datetime, timedelta

import jwt
import pytest
import requests

from integration.local.standins import (
    ROUTES,
    SourceStore,
    StandIns,
    TokenIssuer,
    deactivate_alert,
    make_alert,
    make_amendment,
    make_case_note,
)

LOCAL_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$")  # no offset, no Z
ALL_ROLES = ["ROLE_PRISONER_CASE_NOTES__RO", "ROLE_PRISONER_ALERTS__RO"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(standins: StandIns) -> dict[str, str]:
    return bearer(standins.issue_token())


# --- HMPPS Auth ---------------------------------------------------------------------------------------------------
def test_token_endpoint_issues_rs256_jwt_with_roles(standins: StandIns) -> None:
    response = requests.post(
        f"{standins.auth_url}/oauth/token?grant_type=client_credentials",
        auth=(standins.client_id, standins.client_secret),
        timeout=5,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 1199
    assert body["sub"] == "prison-case-notes-to-probation"
    assert set(body) >= {"access_token", "scope", "auth_source", "jti", "iss"}

    jwks = requests.get(f"{standins.auth_url}/.well-known/jwks.json", timeout=5).json()
    header = jwt.get_unverified_header(body["access_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(body["access_token"], jwt.PyJWK(key).key, algorithms=["RS256"])
    assert header["alg"] == "RS256"
    assert claims["authorities"] == ALL_ROLES
    assert claims["client_id"] == claims["sub"] == "prison-case-notes-to-probation"
    assert claims["grant_type"] == "client_credentials"
    assert claims["iss"] == f"{standins.auth_url}/issuer"
    assert claims["jti"] == body["jti"]
    assert abs(claims["exp"] - (time.time() + 1199)) < 5
    assert standins.tokens_issued == 1


def test_token_endpoint_accepts_grant_type_in_form_body(standins: StandIns) -> None:
    response = requests.post(
        f"{standins.auth_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(standins.client_id, standins.client_secret),
        timeout=5,
    )
    assert response.status_code == 200
    assert standins.tokens_issued == 1


@pytest.mark.parametrize(
    ("credentials", "grant_type", "status"),
    [
        (("prison-case-notes-to-probation", "wrong"), "client_credentials", 401),
        (("someone-else", "secret"), "client_credentials", 401),
        (None, "client_credentials", 401),
        (("prison-case-notes-to-probation", "secret"), "password", 400),
        (("prison-case-notes-to-probation", "secret"), None, 400),
    ],
)
def test_token_endpoint_rejects_bad_requests(standins: StandIns, credentials, grant_type, status) -> None:
    params = {"grant_type": grant_type} if grant_type else {}
    response = requests.post(f"{standins.auth_url}/oauth/token", params=params, auth=credentials, timeout=5)
    assert response.status_code == status
    assert "error" in response.json()
    assert standins.tokens_issued == 0


def test_auth_settings_are_configurable_and_reset(standins: StandIns) -> None:
    standins.configure_auth(expires_in=5, authorities=["ROLE_OTHER"], client_secret="changed")
    response = requests.post(
        f"{standins.auth_url}/oauth/token?grant_type=client_credentials",
        auth=(standins.client_id, "changed"),
        timeout=5,
    )
    assert response.json()["expires_in"] == 5
    assert jwt.decode(response.json()["access_token"], options={"verify_signature": False})["authorities"] == [
        "ROLE_OTHER"
    ]
    standins.reset()
    assert standins.client_secret == "secret"
    assert standins.tokens_issued == 0


# --- bearer checks on every API endpoint ---------------------------------------------------------------------------
def _api_calls(standins: StandIns) -> list[tuple[str, str, str, dict | None]]:
    note = standins.add_case_note("A1234BC")
    alert = standins.add_alert("A1234BC")
    return [
        ("case notes", "GET", standins.case_note_url(note), None),
        (
            "case notes",
            "POST",
            f"{standins.case_notes_url}/search/case-notes/A1234BC",
            {"page": 1, "size": 10, "includeSensitive": True},
        ),
        ("alerts", "GET", standins.alert_url(alert), None),
        ("alerts", "GET", f"{standins.alerts_url}/prisoners/A1234BC/alerts", None),
    ]


def test_api_endpoints_need_a_valid_bearer_token(standins: StandIns) -> None:
    forged = TokenIssuer().issue()["access_token"]  # right claims, wrong signing key
    expired = standins.issue_token(expires_in=-30)
    for _, method, url, body in _api_calls(standins):
        assert requests.request(method, url, json=body, timeout=5).status_code == 401
        for bad in (forged, expired, "not-a-jwt"):
            response = requests.request(method, url, json=body, headers=bearer(bad), timeout=5)
            assert response.status_code == 401, (method, url)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (
            requests.request(method, url, json=body, headers=bearer(standins.issue_token()), timeout=5).status_code
            == 200
        )


def test_api_endpoints_need_their_role(standins: StandIns) -> None:
    only_alerts = standins.issue_token(authorities=["ROLE_PRISONER_ALERTS__RO"])
    only_case_notes = standins.issue_token(authorities=["ROLE_PRISONER_CASE_NOTES__RO"])
    for api, method, url, body in _api_calls(standins):
        wrong, right = (only_alerts, only_case_notes) if api == "case notes" else (only_case_notes, only_alerts)
        denied = requests.request(method, url, json=body, headers=bearer(wrong), timeout=5)
        assert denied.status_code == 403
        assert denied.json()["status"] == 403 and denied.json()["developerMessage"] == "Access Denied"
        assert requests.request(method, url, json=body, headers=bearer(right), timeout=5).status_code == 200


def test_rotating_keys_invalidates_earlier_tokens(standins: StandIns, auth) -> None:
    note = standins.add_case_note()
    assert requests.get(standins.case_note_url(note), headers=auth, timeout=5).status_code == 200
    standins.rotate_keys()
    assert requests.get(standins.case_note_url(note), headers=auth, timeout=5).status_code == 401


# --- Case Notes API --------------------------------------------------------------------------------------------------
def test_case_note_has_the_api_shape(standins: StandIns, auth) -> None:
    note = standins.add_case_note(
        "a1234bc", type="GEN", sub_type="OSE", location_id=None, amendments=[make_amendment(author_user_id=None)]
    )
    response = requests.get(standins.case_note_url(note), headers=auth, timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["offenderIdentifier"] == "A1234BC"
    assert body["typeDescription"] == "General" and body["subTypeDescription"] == "Offender Supervisor Entry"
    assert "locationId" not in body  # nulls omitted
    assert "authorUserId" not in body["amendments"][0]
    assert body["eventId"] == body["legacyId"]
    for field in ("creationDateTime", "occurrenceDateTime"):
        assert LOCAL_DATE_TIME.match(body[field]), body[field]
    assert LOCAL_DATE_TIME.match(body["amendments"][0]["creationDateTime"])
    assert list(body)[:3] == ["caseNoteId", "offenderIdentifier", "type"]  # field order kept


def test_case_note_by_legacy_id_and_lower_case_person(standins: StandIns, auth) -> None:
    note = standins.add_case_note("A1234BC", legacy_id=-42)
    url = f"{standins.case_notes_url}/case-notes/a1234bc/-42"
    assert requests.get(url, headers=auth, timeout=5).json()["caseNoteId"] == note["caseNoteId"]


def test_case_note_of_another_person_is_not_found(standins: StandIns, auth) -> None:
    note = standins.add_case_note("A1234BC")
    response = requests.get(
        f"{standins.case_notes_url}/case-notes/B9999ZZ/{note['caseNoteId']}", headers=auth, timeout=5
    )
    assert response.status_code == 404
    # The Case Notes API omits nulls: its 404 holds only these two fields.
    assert response.json() == {"status": 404, "developerMessage": f"Resource with id [{note['caseNoteId']}] not found."}
    bad_id = requests.get(f"{standins.case_notes_url}/case-notes/A1234BC/not-an-id", headers=auth, timeout=5)
    assert bad_id.status_code == 400


def search(standins: StandIns, auth, body, person: str = "A1234BC") -> requests.Response:
    return requests.post(f"{standins.case_notes_url}/search/case-notes/{person}", json=body, headers=auth, timeout=5)


VALID = {"page": 1, "size": 10, "includeSensitive": True}


@pytest.mark.parametrize(
    "body",
    [
        {"size": 10, "includeSensitive": True},  # page, size and includeSensitive are required
        {"page": 1, "includeSensitive": True},
        {"page": 1, "size": 10},
        {**VALID, "includeSensitive": None},
        {**VALID, "page": "one"},
        {**VALID, "page": 0},
        {**VALID, "size": 0},
        {**VALID, "sort": "text,asc"},
        {**VALID, "sort": " occurredAt"},
        {**VALID, "typeSubTypes": "GEN"},
        {**VALID, "typeSubTypes": [{"subTypes": ["OSE"]}]},
        {**VALID, "occurredFrom": "yesterday"},
        [],
    ],
)
def test_search_validates_the_request(standins: StandIns, auth, body) -> None:
    response = search(standins, auth, body)
    assert response.status_code == 400
    assert response.json()["status"] == 400 and response.json()["developerMessage"]


def test_search_validation_messages_are_the_api_s(standins: StandIns, auth) -> None:
    assert search(standins, auth, {**VALID, "page": 0}).json() == {
        "status": 400,
        "userMessage": "Validation failure: Page number must be at least 1",
        "developerMessage": "400 BAD_REQUEST Validation failure: Page number must be at least 1",
    }
    assert search(standins, auth, {**VALID, "sort": "text,asc"}).json() == {
        "status": 400,
        "developerMessage": "400 BAD_REQUEST Validation failure: Sort field invalid, please provide one of "
        "[occurredAt, createdAt]",
    }


def test_search_sort_defaults_and_directions(standins: StandIns, auth) -> None:
    old = standins.add_case_note(occurred_at="2025-01-01T09:00:00", created_at="2025-03-01T09:00:00")
    new = standins.add_case_note(occurred_at="2025-02-01T09:00:00", created_at="2025-02-01T09:00:00")
    newest_first, oldest_first = [new["caseNoteId"], old["caseNoteId"]], [old["caseNoteId"], new["caseNoteId"]]

    def order(**extra) -> list[str]:
        return [n["caseNoteId"] for n in search(standins, auth, {**VALID, **extra}).json()["content"]]

    assert order() == newest_first  # occurredAt,desc by default
    assert order(sort="occurredAt") == order(sort="occurredAt,sideways") == newest_first  # not asc: descending
    assert order(sort="occurredAt,ASC") == oldest_first
    assert order(sort="createdAt,asc") == newest_first  # old was created last


def test_search_serves_any_page_size_and_echoes_it(standins: StandIns, auth) -> None:
    for _ in range(3):
        standins.add_case_note()
    body = search(standins, auth, {**VALID, "size": 2147483647}).json()
    assert len(body["content"]) == 3
    assert body["metadata"] == {"totalElements": 3, "page": 1, "size": 2147483647}
    assert search(standins, auth, {**VALID, "page": 2, "size": 2}).json()["metadata"] == {
        "totalElements": 3,
        "page": 2,
        "size": 2,
    }


def test_equal_sort_keys_come_back_in_no_fixed_order(standins: StandIns, auth) -> None:
    same = "2025-03-01T09:00:00"
    standins.store.put_case_notes(make_case_note(occurred_at=same, created_at=same) for _ in range(50))
    for _ in range(50):
        standins.add_alert(active_from="2025-03-01")

    def orders() -> tuple[list[str], list[str]]:
        notes = [
            [n["caseNoteId"] for n in search(standins, auth, {**VALID, "size": 100}).json()["content"]]
            for _ in range(3)
        ]
        alerts = [
            [
                a["alertUuid"]
                for a in requests.get(
                    f"{standins.alerts_url}/prisoners/A1234BC/alerts", headers=auth, timeout=5
                ).json()["content"]
            ]
            for _ in range(3)
        ]
        return notes, alerts

    standins.set_tie_seed(11)
    notes, alerts = orders()
    assert len({tuple(o) for o in notes}) == 3 and len({tuple(o) for o in alerts}) == 3  # a new order each time
    assert all(sorted(o) == sorted(notes[0]) for o in notes)
    standins.set_tie_seed(11)
    assert orders() == (notes, alerts)  # seeded: reproducible


def test_case_note_times_carry_fractional_seconds_alert_times_do_not(standins: StandIns, auth) -> None:
    note = standins.add_case_note(
        created_at=datetime(2025, 4, 22, 13, 17, 53, 120000),
        occurred_at=datetime(2025, 4, 22, 13, 0, 0),
        amendments=[make_amendment(created_at=datetime(2025, 4, 23, 8, 0, 1, 5))],
    )
    body = requests.get(standins.case_note_url(note), headers=auth, timeout=5).json()
    assert body["creationDateTime"] == "2025-04-22T13:17:53.12"  # as Jackson writes a LocalDateTime
    assert body["occurrenceDateTime"] == "2025-04-22T13:00:00"  # no fraction when it is zero
    assert body["amendments"][0]["creationDateTime"] == "2025-04-23T08:00:01.000005"
    assert "." in make_case_note(created_at=datetime(2025, 1, 1, 0, 0, 0, 1))["creationDateTime"]
    alert = standins.add_alert(created_at=datetime(2025, 4, 22, 13, 17, 53, 120000))
    assert requests.get(standins.alert_url(alert), headers=auth, timeout=5).json()["createdAt"] == "2025-04-22T13:17:53"


def test_search_filters_by_type_sensitivity_and_dates(standins: StandIns, auth) -> None:
    base = date(2025, 1, 1)
    day = lambda n: f"{base + timedelta(days=n)}T10:00:00"  # noqa: E731
    release = standins.add_case_note(type="PRISON", sub_type="RELEASE", occurred_at=day(1))
    standins.add_case_note(type="PRISON", sub_type="OTHER", occurred_at=day(2))
    ka = standins.add_case_note(type="KA", sub_type="KS", occurred_at=day(3))
    sensitive = standins.add_case_note(type="KA", sub_type="KE", occurred_at=day(4), sensitive=True)
    standins.add_case_note("B9999ZZ", type="KA", sub_type="KS")
    wanted = [{"type": "PRISON", "subTypes": ["RELEASE"]}, {"type": "KA", "subTypes": []}]

    everything = search(
        standins,
        auth,
        {"typeSubTypes": wanted, "includeSensitive": True, "page": 1, "size": 50, "sort": "occurredAt,asc"},
    ).json()
    assert [n["caseNoteId"] for n in everything["content"]] == [
        release["caseNoteId"],
        ka["caseNoteId"],
        sensitive["caseNoteId"],
    ]
    assert everything["metadata"] == {"totalElements": 3, "page": 1, "size": 50}
    assert everything["hasCaseNotes"] is True

    no_sensitive = search(
        standins, auth, {"typeSubTypes": wanted, "includeSensitive": False, "page": 1, "size": 50}
    ).json()
    assert sensitive["caseNoteId"] not in [n["caseNoteId"] for n in no_sensitive["content"]]
    assert [n["caseNoteId"] for n in no_sensitive["content"]] == [ka["caseNoteId"], release["caseNoteId"]]  # desc

    window = search(
        standins,
        auth,
        {
            "typeSubTypes": wanted,
            "includeSensitive": True,
            "page": 1,
            "size": 50,
            "occurredFrom": day(2),
            "occurredTo": day(3),
        },
    ).json()
    assert [n["caseNoteId"] for n in window["content"]] == [ka["caseNoteId"]]

    nobody = search(standins, auth, VALID, person="C0000CC").json()
    assert nobody == {"content": [], "metadata": {"totalElements": 0, "page": 1, "size": 10}, "hasCaseNotes": False}


def test_search_pages(standins: StandIns, auth) -> None:
    notes = [
        standins.add_case_note(type="OMIC", sub_type="COMM", occurred_at=f"2025-03-{d:02d}T09:00:00")
        for d in range(1, 8)
    ]
    pages = [
        search(standins, auth, {"page": p, "size": 3, "sort": "occurredAt,asc", "includeSensitive": True}).json()
        for p in (1, 2, 3, 4)
    ]
    assert [len(p["content"]) for p in pages] == [3, 3, 1, 0]
    assert all(p["metadata"]["totalElements"] == 7 for p in pages)
    assert [n["caseNoteId"] for p in pages for n in p["content"]] == [n["caseNoteId"] for n in notes]
    assert standins.search_requests[0] == {
        "person": "A1234BC",
        "body": {"page": 1, "size": 3, "sort": "occurredAt,asc", "includeSensitive": True},
    }


# --- Alerts API ------------------------------------------------------------------------------------------------------
def test_alert_has_the_api_shape_and_404(standins: StandIns, auth) -> None:
    alert = standins.add_alert("a1234bc", code="VI", created_at="2025-02-28T14:38:30")
    body = requests.get(standins.alert_url(alert), headers=auth, timeout=5).json()
    assert body["prisonNumber"] == "A1234BC"
    assert body["alertCode"] == {
        "alertTypeCode": "V",
        "alertTypeDescription": "Vulnerability",
        "code": "VI",
        "description": "Victim",
        "canBeAdministered": True,
    }
    assert body["isActive"] is True and body["activeTo"] is None  # nulls kept for alerts
    assert body["createdAt"] == "2025-02-28T14:38:30"
    assert "madeInactiveAt" in body and body["prisonCodeWhenCreated"] == "LEI"

    missing = requests.get(
        f"{standins.alerts_url}/alerts/01954cfe-9f5a-7ea3-837b-a1770b389c5b", headers=auth, timeout=5
    )
    assert missing.status_code == 404
    # The Alerts API's ErrorResponse keeps its null fields.
    assert missing.json() == {
        "status": 404,
        "errorCode": None,
        "userMessage": "Not found: Alert not found",
        "developerMessage": "Alert not found with identifier 01954cfe-9f5a-7ea3-837b-a1770b389c5b",
        "moreInfo": None,
    }
    bad = requests.get(f"{standins.alerts_url}/alerts/not-a-uuid", headers=auth, timeout=5)
    assert bad.status_code == 400 and bad.json()["userMessage"].startswith("Validation failure")


def test_person_alerts_page_shape_filters_and_paging(standins: StandIns, auth) -> None:
    today = date.today()
    active = [standins.add_alert(code="VI", active_from=today - timedelta(days=n)) for n in range(1, 4)]
    inactive = standins.store.put_alert(deactivate_alert(make_alert(code="PEEP", active_from=today - timedelta(9))))
    standins.add_alert("B9999ZZ")
    url = f"{standins.alerts_url}/prisoners/A1234BC/alerts"

    everything = requests.get(url, headers=auth, timeout=5).json()
    assert set(everything) >= {
        "content",
        "totalElements",
        "totalPages",
        "last",
        "first",
        "size",
        "number",
        "numberOfElements",
        "empty",
        "pageable",
        "sort",
    }
    assert everything["totalElements"] == 4 and everything["totalPages"] == 1
    assert everything["last"] is True and everything["first"] is True and everything["empty"] is False
    assert everything["size"] == 2147483647  # one huge page by default
    assert [a["alertUuid"] for a in everything["content"]][:3] == [a["alertUuid"] for a in active]  # activeFrom desc

    only_active = requests.get(url, params={"isActive": "true"}, headers=auth, timeout=5).json()
    assert {a["alertUuid"] for a in only_active["content"]} == {a["alertUuid"] for a in active}
    only_inactive = requests.get(url, params={"isActive": "false"}, headers=auth, timeout=5).json()
    assert [a["alertUuid"] for a in only_inactive["content"]] == [inactive["alertUuid"]]
    by_code = requests.get(url, params={"alertCode": "PEEP,XA"}, headers=auth, timeout=5).json()
    assert by_code["totalElements"] == 1

    page = requests.get(url, params={"page": 1, "size": 3, "sort": "activeFrom,ASC"}, headers=auth, timeout=5).json()
    assert (page["number"], page["size"], page["numberOfElements"], page["totalPages"]) == (1, 3, 1, 2)
    assert page["last"] is True and page["first"] is False
    assert page["content"][0]["alertUuid"] == active[0]["alertUuid"]  # the latest activeFrom comes last
    beyond = requests.get(url, params={"page": 5, "size": 3}, headers=auth, timeout=5).json()
    assert beyond["empty"] is True and beyond["content"] == []

    assert requests.get(url, params={"isActive": "maybe"}, headers=auth, timeout=5).status_code == 400
    assert requests.get(url, params={"sort": "text,asc"}, headers=auth, timeout=5).status_code == 500  # query fails
    for lenient in ({"size": 0}, {"size": "lots"}, {"page": -1}):  # Spring falls back to the defaults
        page = requests.get(url, params=lenient, headers=auth, timeout=5).json()
        assert (page["number"], page["size"], page["totalElements"]) == (0, 2147483647, 4)


def test_alert_activity_depends_on_active_to_only(standins: StandIns, auth) -> None:
    today = date.today()
    future = standins.add_alert(active_from=today + timedelta(days=30))  # not started yet: still active
    ends_tomorrow = standins.add_alert(active_from=today - timedelta(days=5), active_to=today + timedelta(days=1))
    ended_today = standins.add_alert(active_from=today - timedelta(days=5), active_to=today)
    assert (future["isActive"], ends_tomorrow["isActive"], ended_today["isActive"]) == (True, True, False)
    url = f"{standins.alerts_url}/prisoners/A1234BC/alerts"

    def ids(is_active: str) -> set[str]:
        content = requests.get(url, params={"isActive": is_active}, headers=auth, timeout=5).json()["content"]
        return {a["alertUuid"] for a in content}

    assert ids("true") == {future["alertUuid"], ends_tomorrow["alertUuid"]}
    assert ids("false") == {ended_today["alertUuid"]}
    standins.store.today = lambda: today + timedelta(days=1)  # a day later, the filter moves on
    assert ids("false") == {ended_today["alertUuid"], ends_tomorrow["alertUuid"]}


# --- faults ----------------------------------------------------------------------------------------------------------
def test_fault_fixed_status_until_cleared(standins: StandIns, auth) -> None:
    note = standins.add_case_note()
    standins.set_fault("get_case_note", status=503, retry_after=1)
    for _ in range(3):
        response = requests.get(standins.case_note_url(note), headers=auth, timeout=5)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
    standins.clear_faults("get_case_note")
    assert requests.get(standins.case_note_url(note), headers=auth, timeout=5).status_code == 200
    assert [e["status"] for e in standins.request_log("get_case_note")] == [503, 503, 503, 200]


def test_fault_fails_n_times_then_succeeds(standins: StandIns, auth) -> None:
    alert = standins.add_alert()
    standins.set_fault("get_alert", status=502, times=2)
    statuses = [requests.get(standins.alert_url(alert), headers=auth, timeout=5).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]
    assert standins.faults.active() == {}
    assert standins.requests("get_alert") == 3


def test_fault_latency_provokes_client_timeouts(standins: StandIns, auth) -> None:
    note = standins.add_case_note()
    standins.set_fault("get_case_note", latency_ms=600, times=1)
    with pytest.raises(requests.ReadTimeout):
        requests.get(standins.case_note_url(note), headers=auth, timeout=(1, 0.2))
    started = time.monotonic()
    assert requests.get(standins.case_note_url(note), headers=auth, timeout=(1, 0.2)).status_code == 200
    assert time.monotonic() - started < 0.2


def test_hang_fault_holds_requests_until_cleared(standins: StandIns, auth) -> None:
    note = standins.add_case_note()
    standins.set_fault("get_case_note", hang=True)
    with pytest.raises(requests.ReadTimeout):
        requests.get(standins.case_note_url(note), headers=auth, timeout=(5, 0.3))
    assert [e["status"] for e in standins.request_log("get_case_note")] == [None]  # still held, unanswered
    standins.clear_faults()
    deadline = time.monotonic() + 30
    while standins.request_log("get_case_note")[0]["status"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert standins.request_log("get_case_note")[0]["status"] == 503  # let go, it answers 503
    assert requests.get(standins.case_note_url(note), headers=auth, timeout=5).status_code == 200


def test_redirect_fault(standins: StandIns) -> None:
    standins.set_fault("token", status=307, location="http://elsewhere.example/auth/oauth/token")
    response = requests.post(
        f"{standins.auth_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(standins.client_id, standins.client_secret),
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 307
    assert response.headers["Location"] == "http://elsewhere.example/auth/oauth/token"


def test_fault_malformed_json_and_token_outage(standins: StandIns, auth) -> None:
    standins.set_fault("search_case_notes", malformed=True)
    response = search(standins, auth, VALID)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    standins.set_fault("token", status=503)
    outage = requests.post(
        f"{standins.auth_url}/oauth/token?grant_type=client_credentials",
        auth=(standins.client_id, standins.client_secret),
        timeout=5,
    )
    assert outage.status_code == 503 and outage.json()["error"] == "server_error"
    assert standins.tokens_issued == 0


def test_crafted_answers_are_served_verbatim_after_the_token_check_until_reset(standins: StandIns, auth) -> None:
    url = f"{standins.case_notes_url}/case-notes/A1234BC/{'x' * 5000}"  # not a UUID: the store cannot hold it
    body = (
        '{"caseNoteId": "'
        + "x" * 5000
        + '", "text": "nul \\u0000 and \\ud800", "deep": '
        + "[" * 5000
        + "]" * 5000
        + "}"
    )
    standins.serve(url, body)
    standins.serve("/search/case-notes/A1234BC", '{"content": []}', status=200)
    assert requests.get(url, timeout=5).status_code == 401  # still needs a token
    answer = requests.get(url, headers=auth, timeout=5)
    assert (answer.status_code, answer.text) == (200, body)
    assert search(standins, auth, VALID).text == '{"content": []}'
    admin = requests.put(
        f"{standins.alerts_url}/__admin/answers",
        timeout=5,
        json={"path": "/alerts/not-a-uuid", "body": "[1]", "status": 200},
    )
    assert admin.status_code == 200
    assert requests.get(f"{standins.alerts_url}/alerts/not-a-uuid", headers=auth, timeout=5).text == "[1]"
    standins.reset()
    assert requests.get(url, headers=auth, timeout=5).status_code == 400  # the real route again


def test_probabilistic_fault_is_reproducible_with_a_seed(standins: StandIns, auth) -> None:
    alert = standins.add_alert()

    def run() -> list[int]:
        standins.set_fault("get_alert", status=503, probability=0.3, seed=7)
        return [requests.get(standins.alert_url(alert), headers=auth, timeout=5).status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert 0 < first.count(503) < 30


def test_fault_validation(standins: StandIns) -> None:
    with pytest.raises(ValueError):
        standins.set_fault("no_such_route", status=500)
    with pytest.raises(ValueError):
        standins.set_fault("token", times=0)
    with pytest.raises(ValueError):
        standins.set_fault("token", probability=2)
    assert set(ROUTES) == {"token", "jwks", "get_case_note", "search_case_notes", "get_alert", "person_alerts"}


# --- admin over HTTP -------------------------------------------------------------------------------------------------
def test_admin_seeds_mutates_and_deletes_over_http(standins: StandIns, auth) -> None:
    note = make_case_note("A1234BC", text="first version")
    admin = f"{standins.alerts_url}/__admin"  # every app has the admin API; they share one store
    put = requests.put(f"{admin}/case-notes", json=[note, make_case_note("A1234BC")], timeout=5)
    assert put.status_code == 200 and put.json()["upserted"] == 2
    url = standins.case_note_url(note)
    assert requests.get(url, headers=auth, timeout=5).json()["text"] == "first version"

    changed = dict(note, text="second version", amendments=[make_amendment()])
    requests.put(f"{standins.case_notes_url}/__admin/case-notes", json=changed, timeout=5).raise_for_status()
    assert requests.get(url, headers=auth, timeout=5).json()["text"] == "second version"

    assert requests.delete(f"{admin}/case-notes/{note['caseNoteId']}", timeout=5).status_code == 204
    assert requests.get(url, headers=auth, timeout=5).status_code == 404
    assert requests.delete(f"{admin}/case-notes/{note['caseNoteId']}", timeout=5).status_code == 404

    alert = make_alert("A1234BC")
    requests.put(f"{standins.auth_url.rsplit('/auth', 1)[0]}/__admin/alerts", json=alert, timeout=5).raise_for_status()
    assert requests.get(standins.alert_url(alert), headers=auth, timeout=5).status_code == 200
    assert len(requests.get(f"{admin}/alerts", params={"person": "A1234BC"}, timeout=5).json()) == 1
    assert requests.delete(f"{admin}/alerts/{alert['alertUuid']}", timeout=5).status_code == 204
    assert requests.get(standins.alert_url(alert), headers=auth, timeout=5).status_code == 404

    bad = requests.put(f"{admin}/case-notes", json={"text": "no ids"}, timeout=5)
    assert bad.status_code == 400


def test_admin_faults_request_log_and_reset_over_http(standins: StandIns, auth) -> None:
    admin = f"{standins.case_notes_url}/__admin"
    note = standins.add_case_note()
    assert requests.put(f"{admin}/faults/get_case_note", json={"status": 500, "times": 1}, timeout=5).ok
    assert requests.get(f"{admin}/faults", timeout=5).json()["get_case_note"]["status"] == 500
    assert requests.get(standins.case_note_url(note), headers=auth, timeout=5).status_code == 500
    assert requests.get(standins.case_note_url(note), headers=auth, timeout=5).status_code == 200

    log = requests.get(f"{admin}/requests", params={"route": "get_case_note"}, timeout=5).json()
    assert log["counts"] == {"get_case_note": 2}
    assert [e["status"] for e in log["log"]] == [500, 200]
    assert set(log["log"][0]) == {"route", "method", "path", "query", "status", "at", "durationMs"}  # no bodies

    assert requests.put(f"{admin}/faults/get_case_note", json={"colour": "red"}, timeout=5).status_code == 400
    assert requests.put(f"{admin}/faults/nope", json={"status": 500}, timeout=5).status_code == 400
    assert requests.put(f"{admin}/faults/*", json={"status": 503}, timeout=5).ok
    assert requests.get(standins.alert_url(standins.add_alert()), headers=auth, timeout=5).status_code == 503
    assert requests.delete(f"{admin}/faults", timeout=5).ok

    assert requests.put(f"{admin}/auth", json={"expires_in": 30}, timeout=5).json()["expires_in"] == 30
    assert requests.post(f"{admin}/reset", timeout=5).ok
    assert standins.store.counts() == {"caseNotes": 0, "alerts": 0}
    assert standins.requests() == 0
    assert requests.get(f"{admin}/health", timeout=5).json()["status"] == "UP"


def test_store_is_thread_safe_copying_and_can_be_shared() -> None:
    store = SourceStore()
    note = store.put_case_note(make_case_note("a1111aa", legacy_id=5))
    note["text"] = "changed by caller"
    assert store.get_case_note(5)["text"] != "changed by caller"
    assert store.get_case_note(note["caseNoteId"], "A1111AA") is not None
    assert store.get_case_note(note["caseNoteId"], "B2222BB") is None
    with StandIns.start(store=store) as own:
        assert own.store is store
        assert own.case_notes_url != own.alerts_url != own.auth_url


def test_cli_prints_urls_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "integration.local.standins",
            "--auth-port",
            "0",
            "--case-notes-port",
            "0",
            "--alerts-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert lines["HMPPS_AUTH_URL"].endswith("/auth")
        health = requests.get(f"{lines['CASE_NOTES_API_URL']}/__admin/health", timeout=5).json()
        assert health["status"] == "UP"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_make_helpers_defaults() -> None:
    note, other = make_case_note(), make_case_note()
    assert note["caseNoteId"] != other["caseNoteId"] and note["legacyId"] != other["legacyId"]
    assert json.loads(json.dumps(note)) == note
    alert = make_alert(active_from=date.today() - timedelta(days=3), active_to=date.today())
    assert alert["isActive"] is False  # activeTo today: made inactive today
    assert make_alert()["isActive"] is True
    assert make_alert(active_from=date.today() + timedelta(days=3))["isActive"] is True  # activeFrom does not count
