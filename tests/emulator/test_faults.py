"""Each fault kind does what a real failure does, to the vendor's shape, deterministically when seeded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ideochar.emulator import testing
from ideochar.emulator.faults import FaultProfile, Faults, load_profile

from .support import FAL_GENERATE, FAL_KEY, FAL_RUN, fal_body

pytestmark = pytest.mark.anyio


def fal(*rules: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    return {"seed": seed, "fal": list(rules)}


async def test_latency_delays_the_answer(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile(fal({"route": "submit", "kind": "latency", "seconds": 0.2}))
    started = time.monotonic()
    response = await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


async def test_an_app_level_error_has_fals_shape_and_request_id(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile(fal({"route": "submit", "kind": "status", "status": 503}))
    response = await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)
    assert response.status_code == 503
    assert response.json() == {"detail": "Runner scheduling failure", "error_type": "runner_scheduling_failure"}
    assert response.headers["x-fal-request-id"]
    assert response.headers["x-fal-error-type"] == "runner_scheduling_failure"
    assert state.ledger.entries() == []


async def test_an_ingress_error_is_an_nginx_page_without_a_request_id(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile(fal({"route": "submit", "kind": "status", "status": 502, "ingress": True}))
    response = await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)
    assert response.status_code == 502
    assert "nginx" in response.text
    assert "x-fal-request-id" not in response.headers


async def test_a_rate_limit_carries_retry_after(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile(fal({"route": "status", "kind": "rate_limit", "retry_after": 2.5}))
    submitted = (await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)).json()
    response = await http.get(submitted["status_url"], headers=FAL_KEY)
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")


async def test_a_hang_never_answers_until_the_client_gives_up(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile(fal({"route": "submit", "kind": "hang"}))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2
    assert state.ledger.entries() == []


async def test_a_refused_request_breaks_the_connection_and_admits_nothing(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile(fal({"route": "submit", "kind": "refuse"}))
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)
    assert state.ledger.entries() == []


async def test_a_drop_after_admission_leaves_a_billed_job_that_can_be_followed(
    http: httpx.AsyncClient, state: Any
) -> None:
    state.set_profile(fal({"route": "submit", "kind": "drop_after_admit"}))
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)
    [job_id] = state.ledger.job_ids("fal")
    status = await http.get(f"/fal/fal-ai/ideogram/requests/{job_id}/status", headers=FAL_KEY)
    assert status.json()["status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")


async def test_a_truncated_answer_is_a_broken_connection(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile(fal({"route": "run", "kind": "truncate"}))
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(FAL_RUN, json=fal_body(), headers=FAL_KEY)
    assert state.ledger.count("fal") == 1  # the run was admitted (and billed) before its answer was cut


async def test_malformed_json_is_a_complete_answer_that_does_not_parse(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile(fal({"route": "submit", "kind": "malformed_json"}))
    response = await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(ValueError):
        response.json()


async def test_a_wrong_content_type_keeps_the_body(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile(fal({"route": "submit", "kind": "wrong_content_type"}))
    response = await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)
    assert response.headers["content-type"].startswith("text/html")
    assert "request_id" in response.json()


async def test_expired_result_urls_answer_404(http: httpx.AsyncClient, state: Any) -> None:
    output = (await http.post(FAL_RUN, json=fal_body(), headers=FAL_KEY)).json()
    url = output["images"][0]["url"]
    assert (await http.get(url)).status_code == 200
    state.set_profile(fal({"route": "files", "kind": "expire"}))
    assert (await http.get(url)).status_code == 404
    state.set_profile(None)
    assert (await http.get(url)).status_code == 404, "an expired file stays gone"


async def test_expiring_files_from_the_admin_endpoint(http: httpx.AsyncClient) -> None:
    url = (await http.post(FAL_RUN, json=fal_body(), headers=FAL_KEY)).json()["images"][0]["url"]
    expired = await http.post("/_emulator/files/expire", json={"vendor": "fal"})
    assert expired.json() == {"expired": 1}
    assert (await http.get(url)).status_code == 404


async def test_a_stuck_job_stays_in_progress(http: httpx.AsyncClient, state: Any) -> None:
    state.set_model_seconds(0.05)
    state.set_profile(fal({"route": "submit", "kind": "stuck"}))
    submitted = (await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)).json()
    await anyio.sleep(0.2)
    status = await http.get(submitted["status_url"], headers=FAL_KEY)
    assert (status.status_code, status.json()["status"]) == (202, "IN_PROGRESS")
    assert state.ledger.count("fal") == 1


async def test_after_and_times_pick_exactly_which_requests_fail(http: httpx.AsyncClient, state: Any) -> None:
    state.set_profile(fal({"route": "submit", "kind": "status", "status": 500, "after": 1, "times": 2}))
    codes = [(await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)).status_code for _ in range(5)]
    assert codes == [200, 500, 500, 200, 200]


def test_a_seeded_rate_gives_the_same_draws_every_time() -> None:
    profile = load_profile(fal({"route": "*", "kind": "status", "status": 503, "rate": 0.5}, seed=11))
    runs = []
    for _ in range(2):
        faults = Faults(profile)
        runs.append([faults.decide("fal", "submit", {"status"})[1] is not None for _ in range(40)])
    assert runs[0] == runs[1]
    assert 5 < sum(runs[0]) < 35, "about half fire"


def test_rules_match_routes_by_glob_and_vendors_by_name_or_star() -> None:
    faults = Faults(
        load_profile({"segmind": [{"route": "v2.*", "kind": "refuse"}], "*": [{"route": "files", "kind": "expire"}]})
    )
    assert faults.decide("segmind", "v2.status", {"refuse"})[1] is not None
    assert faults.decide("segmind", "v1", {"refuse"})[1] is None
    assert faults.decide("fal", "files", {"expire"})[1] is not None


def test_profiles_load_from_json_and_toml_files(tmp_path: Path) -> None:
    toml = tmp_path / "faults.toml"
    toml.write_text('seed = 3\n[[fal]]\nroute = "submit"\nkind = "rate_limit"\nretry_after = 4\n')
    as_json = tmp_path / "faults.json"
    as_json.write_text('{"seed": 3, "fal": [{"route": "submit", "kind": "rate_limit", "retry_after": 4}]}')
    assert load_profile(toml) == load_profile(str(as_json)) == load_profile(as_json.read_text())
    assert load_profile(toml).rules_for("fal")[0].fault().status == 429


@pytest.mark.parametrize(
    ("profile", "words"),
    [
        ({"fal": [{"kind": "explode"}]}, "fal.0.kind"),
        ({"fal": [{"kind": "status"}]}, "needs a status code"),
        ({"fal": [{"kind": "latency", "seconds": 1, "rate": 2}]}, "rate"),
        ({"fal": [{"kind": "hang", "typo": 1}]}, "typo"),
    ],
)
def test_a_bad_profile_is_refused_with_a_readable_message(profile: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        load_profile(profile)


async def test_the_admin_endpoint_sets_reads_and_clears_faults(http: httpx.AsyncClient) -> None:
    document = {"seed": 1, "fal": [{"route": "submit", "kind": "status", "status": 500}]}
    assert (await http.put("/_emulator/faults", json=document)).status_code == 200
    assert (await http.get("/_emulator/faults")).json() == document
    assert (await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)).status_code == 500
    toml = 'seed = 2\n[[fal]]\nroute = "submit"\nkind = "status"\nstatus = 502\n'
    await http.post("/_emulator/faults", content=toml, headers={"content-type": "application/toml"})
    assert (await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)).status_code == 502
    bad = await http.put("/_emulator/faults", json={"fal": [{"kind": "nope"}]})
    assert bad.status_code == 400 and "error" in bad.json()
    await http.delete("/_emulator/faults")
    assert (await http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)).status_code == 200


def test_a_profile_round_trips_through_its_document() -> None:
    profile = load_profile(fal({"route": "submit", "kind": "hang", "seconds": 2}, seed=5))
    assert load_profile(profile.to_document()) == profile
    assert isinstance(profile, FaultProfile)


def test_faults_on_a_real_socket_cut_and_hang_the_connection() -> None:
    with testing.running_emulator() as server, httpx.Client(base_url=server.url) as http:
        testing.set_faults(server, fal({"route": "submit", "kind": "drop_after_admit", "times": 1}))
        with pytest.raises(httpx.RemoteProtocolError):
            http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY)
        assert testing.billed(server, "fal") == 1
        testing.set_faults(server, fal({"route": "run", "kind": "truncate"}))
        with pytest.raises(httpx.RemoteProtocolError):
            http.post(FAL_RUN, json=fal_body(), headers=FAL_KEY)
        testing.set_faults(server, fal({"route": "submit", "kind": "hang"}))
        with pytest.raises(httpx.ReadTimeout):
            http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY, timeout=0.2)
        testing.set_faults(server, None)
        assert http.post(FAL_GENERATE, json=fal_body(), headers=FAL_KEY).status_code == 200


def test_a_missing_profile_file_is_named() -> None:
    with pytest.raises(ValueError, match="no such fault profile file"):
        load_profile("faults-that-do-not-exist.toml")
