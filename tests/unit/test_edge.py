"""The API edge: domain errors carry no HTTP status; the edge maps each class to one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "functions" / "api") not in sys.path:
    sys.path.insert(0, str(ROOT / "functions" / "api"))

from chalicelib import edge  # noqa: E402
from oblio.control.links import ExpiredLink, InvalidLink  # noqa: E402
from oblio.core import errors  # noqa: E402
from oblio.jobs.bulk import _Rejected  # noqa: E402
from oblio.jobs.retention import SweepIncomplete  # noqa: E402
from oblio.rights.selfservice import RateLimited  # noqa: E402


@pytest.mark.parametrize("exc, status", [
    (errors.Unauthorized("no key"), 401),
    (errors.Forbidden("no scope"), 403),
    (errors.NotFound("none"), 404),
    (errors.Conflict("busy"), 409),
    (errors.Gone("expired"), 410),
    (errors.BadRequest("not JSON"), 400),
    (errors.Invalid("field", "bad"), 422),
    (errors.TransientError("again"), 503),
    (errors.MessageRefused("MessageRejected"), 502),
    (errors.DataMapError(["a problem"]), 500),
    (errors.OblioError("anything else"), 500),
    (InvalidLink("this link is not valid"), 400),
    (ExpiredLink("this link has expired"), 410),
    (RateLimited("too many"), 429),
    (_Rejected("not a CSV"), 422),
    (SweepIncomplete("chunks left"), 500),
])
def test_each_domain_error_answers_its_status_at_the_edge(exc, status):
    assert not hasattr(exc, "status")
    response = edge.error_response(exc)
    assert response.status_code == status
    assert response.body == exc.to_body()


def test_codes_stay_with_the_errors():
    assert (InvalidLink("x").code, ExpiredLink("x").code, RateLimited("x").code,
            _Rejected("x").code) == ("invalid_link", "link_expired", "rate_limited",
                                     "invalid_file")
    assert errors.Invalid("months", "bad").details == {"field": "months"}


def test_a_followed_link_answers_a_page_that_says_what_happened():
    from chalicelib import pages
    from oblio.rights.consent import Withdrawn

    done = pages.unsubscribed(Withdrawn("Acme <Shop>", "newsletter"))
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    assert "unsubscribed" in done.body and "Acme &lt;Shop&gt;" in done.body

    @pages.on_bad_link(invalid=pages.LINK_INVALID, expired=pages.LINK_EXPIRED)
    def follow(exc):
        raise exc

    bad, old = follow(InvalidLink("x")), follow(ExpiredLink("x"))
    assert bad.status_code == 400 and "Nothing was changed" in bad.body
    assert old.status_code == 410 and "expired" in old.body
    assert bad.headers["Content-Type"].startswith("text/html")
    moved = pages.redirect("https://s3.example/archive?sig=1")
    assert moved.status_code == 302 and moved.headers["Location"].startswith("https://s3")


def test_a_write_runs_once_per_idempotency_key(aws, tenant):
    """Same key and body: the first answer, the write done once; another body: 409; the same
    key while the first call still runs: 409 in progress."""
    import json

    from chalice import Chalice
    from chalice.test import Client

    from oblio.control import tenants
    from oblio.core.bodies import Body

    class Thing(Body):
        colour: str | None = None
        again: bool = False

    tenants.create_tenant(tenant, "T")
    _, key = tenants.create_api_key(tenant, ["admin"])
    app = Chalice(app_name="idempotency-test")
    calls: list[tuple[str, object]] = []
    inner: list[int] = []

    @app.route("/things/{thing_id}", methods=["POST"])
    @edge.api(app, scope="admin")
    @edge.idempotent_write(app, f"make_thing_{tenant}", body=Thing)
    def make_thing(principal, body, thing_id):
        calls.append((thing_id, body))
        if body.again:  # the same key while this call runs
            try:
                edge.idempotent(app, principal, f"make_thing_{tenant}", {"again": True},
                                {"thing_id": thing_id})
            except errors.Conflict as exc:
                inner.append(edge.status_of(exc))
                assert exc.code == "idempotency_in_progress"
        return 201, {"thing_id": thing_id, "n": len(calls)}

    def post(body, idem="k-1", thing="t1"):
        return client.http.post(f"/things/{thing}", body=json.dumps(body), headers={
            "Authorization": f"Bearer {key}", "Idempotency-Key": idem,
            "Content-Type": "application/json"})

    with Client(app) as client:
        first, again = post({"colour": "red"}), post({"colour": "red"})
        assert (first.status_code, again.status_code) == (201, 201)
        assert json.loads(again.body) == json.loads(first.body) == {"thing_id": "t1", "n": 1}
        assert len(calls) == 1
        other = post({"colour": "blue"})
        assert other.status_code == 409
        assert json.loads(other.body)["error"]["code"] == "idempotency_key_reused"
        assert post({"colour": "red"}, thing="t2").status_code == 409  # params count too
        assert post({"again": True}, idem="k-2").status_code == 201 and inner == [409]
        unkeyed = client.http.post("/things/t3", body=json.dumps({}), headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        assert unkeyed.status_code == 201 and len(calls) == 3
        bad = post({"colour": 1}, idem="k-3")  # refused before anything is recorded
        assert bad.status_code == 422 and json.loads(bad.body)["error"]["details"] == {
            "field": "colour"}
        assert post({"colour": "green"}, idem="k-3").status_code == 201
