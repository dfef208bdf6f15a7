"""The local stack's memo of moto's server routing (infra/local/moto_speed): the backend it
answers for a host is the one moto's own routing finds, and a host nobody serves is never
remembered. (The memo is called directly: installing the shims here would pull them from
under a local stack another test runs in this process.)"""

from __future__ import annotations

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from infra.local import moto_speed

HOSTS = ["dynamodb.us-east-1.amazonaws.com", "s3.us-east-1.amazonaws.com",
         "events.eu-west-1.amazonaws.com", "states.us-east-1.amazonaws.com",
         "kms.us-east-1.amazonaws.com", "moto_api", "bucket.s3.amazonaws.com"]


def test_the_remembered_backend_is_the_one_motos_routing_finds_and_unknown_hosts_stay_unknown(
        monkeypatch):
    monkeypatch.setattr(moto_speed, "_routes", {})
    app = DomainDispatcherApplication(create_backend_app)
    own = {h: moto_speed._orig_backend_for_host(app, h) for h in HOSTS}
    assert own["dynamodb.us-east-1.amazonaws.com"] == "dynamodb"
    for _ in range(2):  # the second round is answered from the memo
        assert {h: moto_speed._backend_for_host(app, h) for h in HOSTS} == own
    assert moto_speed._routes == own
    assert moto_speed._backend_for_host(app, "nothing.example.org") is None
    assert moto_speed._backend_for_host(app, None) is None
    assert "nothing.example.org" not in moto_speed._routes and None not in moto_speed._routes
