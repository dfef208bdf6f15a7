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


def test_an_accounts_backends_are_found_without_motos_lock_once_there_and_made_again_after_reset():
    import threading

    from moto.core import base_backend
    from moto.core.base_backend import BackendDict

    backends = BackendDict(lambda region, account: object(), "sqs")
    moto_speed._account_backend(backends, "111122223333")  # not there yet: moto's own code
    assert "111122223333" in backends and any(d is backends for d in BackendDict._instances)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with base_backend.backend_lock:
            held.set()
            done.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        finder = threading.Thread(target=moto_speed._account_backend,
                                  args=(backends, "111122223333"))
        finder.start()
        finder.join(2)
        assert not finder.is_alive()  # answered while another thread holds moto's lock
    finally:
        done.set()
        holder.join()
    BackendDict._instances.remove(backends)  # as a reset leaves it: moto's code registers it
    backends.clear()
    moto_speed._account_backend(backends, "111122223333")
    assert "111122223333" in backends and any(d is backends for d in BackendDict._instances)
    BackendDict._instances.remove(backends)
