"""The local stack's moto server with keep-alive (infra/local/moto_http): AWS calls answer as
before over connections that stay open (S3 bodies, HEAD lengths, errors, a 100-continue
upload, DynamoDB), a request it cannot frame (chunked) is still answered and its connection
closed, an application error is a 500 that closes its connection, and once stopped nothing
answers on the port, not even a connection kept alive."""

from __future__ import annotations

import http.client
import socket

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local import moto_http
from infra.local.stack import free_port

# moto reads the service from the credential scope (no signature check)
_S3_AUTH = {"Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261206/eu-west-1/s3/"
                             "aws4_request, SignedHeaders=host, Signature=0"}


@pytest.fixture
def server():
    s = moto_http.Server("127.0.0.1", free_port())
    s.start()
    yield s
    s.stop()


def _client(server: moto_http.Server, service: str):
    host, port = server.get_host_and_port()
    return boto3.client(service, region_name="eu-west-1", endpoint_url=f"http://{host}:{port}",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1}))


def test_calls_answer_as_before_over_one_kept_alive_connection(server):
    s3 = _client(server, "s3")
    s3.create_bucket(Bucket="keepalive-http",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    big = bytes(range(256)) * 8192  # 2 MiB: botocore asks for 100-continue
    s3.put_object(Bucket="keepalive-http", Key="big.bin", Body=big)
    s3.put_object(Bucket="keepalive-http", Key="empty.txt", Body=b"")
    for _ in range(10):
        assert s3.get_object(Bucket="keepalive-http", Key="big.bin")["Body"].read() == big
        assert s3.head_object(Bucket="keepalive-http", Key="big.bin")["ContentLength"] == len(big)
        assert s3.get_object(Bucket="keepalive-http", Key="empty.txt")["Body"].read() == b""
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket="keepalive-http", Key="missing")
        assert err.value.response["Error"]["Code"] == "NoSuchKey"
        with pytest.raises(ClientError) as err:
            s3.head_object(Bucket="keepalive-http", Key="missing")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    ddb = _client(server, "dynamodb")
    ddb.create_table(TableName="keepalive-http", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    for i in range(20):
        ddb.put_item(TableName="keepalive-http", Item={"pk": {"S": f"k{i}"}})
    assert ddb.scan(TableName="keepalive-http", Select="COUNT")["Count"] == 20
    # some 70 calls over two clients: a connection each (moto's own server: one a call)
    assert server.accepted <= 4


def test_a_chunked_request_is_answered_and_its_connection_closed(server):
    s3 = _client(server, "s3")
    s3.create_bucket(Bucket="keepalive-chunked",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    host, port = server.get_host_and_port()
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("PUT", "/keepalive-chunked/c.txt")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Authorization", _S3_AUTH["Authorization"])
    conn.endheaders()
    conn.send(b"5\r\nhello\r\n0\r\n\r\n")
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 200 and answer.getheader("Connection") == "close"
    conn.close()
    body = s3.get_object(Bucket="keepalive-chunked", Key="c.txt")["Body"].read()
    assert body == b"hello"


def test_once_stopped_a_kept_alive_connection_is_closed_and_the_port_refuses():
    server = moto_http.Server("127.0.0.1", free_port())
    server.start()
    host, port = server.get_host_and_port()
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/", headers=_S3_AUTH)  # ListBuckets
    first = conn.getresponse()
    first.read()
    assert first.status == 200 and first.getheader("Connection") != "close"
    server.stop()
    assert conn.sock is not None and conn.sock.recv(1) == b""  # closed by the server
    conn.close()
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()


def test_an_application_error_is_a_500_and_its_connection_closed(server, monkeypatch):
    def broken(environ, start_response):
        raise RuntimeError("the application failed")

    monkeypatch.setattr(server._server, "app", broken)
    host, port = server.get_host_and_port()
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/", headers=_S3_AUTH)
    answer = conn.getresponse()
    assert answer.status == 500 and answer.getheader("Connection") == "close"
    assert answer.read() == b"Internal Server Error"
    assert conn.sock is None or conn.sock.recv(1) == b""  # closed by the server
    conn.close()
