"""What the stack deploys, checked on the synthesized template with CDK `Template` assertions:
every catalogue entry, with the settings a GDPR deployment owes (encryption, recovery,
expiry, TLS, least privilege), read generically from the catalogue so that a new entry is
checked without a new test."""

from __future__ import annotations

import json
import zipfile
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra.catalogue import CATALOGUE, physical_name
from infra.cdk import access
from infra.cdk.config import ROOT
from infra.cdk.routes import routes
from infra.cdk.validate import BUCKET_REF, is_chalice
from tests.infra.cfn import by_property, of_type
from tests.infra.conftest import CONTEXT, PREFIX

TABLES = [t for t in CATALOGUE.tables if not t.demo]
BUCKETS = [b for b in CATALOGUE.buckets if not b.demo]
TASKS = [f for f in CATALOGUE.functions if not is_chalice(f)]


def name(kind: str, entry: str) -> str:
    return physical_name(PREFIX, kind, entry)


def ref_id(value: Any) -> str | None:
    """The logical id a `Ref` or `Fn::GetAtt` points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def refs(value: Any) -> set[str]:
    """Every logical id referenced anywhere inside a value."""
    out: set[str] = set()
    if isinstance(value, dict):
        if (found := ref_id(value)) is not None:
            out.add(found)
        for v in value.values():
            out |= refs(v)
    elif isinstance(value, list):
        for v in value:
            out |= refs(v)
    return out


# -- tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_table_has_keys_indexes_ttl_recovery_and_encryption(template: Any, table: Any) -> None:
    keys = [{"AttributeName": table.partition.name, "KeyType": "HASH"}]
    if table.sort:
        keys.append({"AttributeName": table.sort.name, "KeyType": "RANGE"})
    props: dict[str, Any] = {
        "TableName": name("table", table.name),
        "KeySchema": keys,
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS",
                             "KMSMasterKeyId": Match.any_value()},
        "DeletionProtectionEnabled": True,
    }
    if table.ttl_attribute:
        props["TimeToLiveSpecification"] = {"AttributeName": table.ttl_attribute,
                                            "Enabled": True}
    if table.indexes:
        props["GlobalSecondaryIndexes"] = Match.array_with([
            Match.object_like({
                "IndexName": i.name,
                "KeySchema": [{"AttributeName": i.partition.name, "KeyType": "HASH"},
                              *([{"AttributeName": i.sort.name, "KeyType": "RANGE"}]
                                if i.sort else [])],
                "Projection": {"ProjectionType": i.projection}})
            for i in table.indexes])
    template.has_resource("AWS::DynamoDB::Table", {
        "Properties": Match.object_like(props), "DeletionPolicy": "Retain"})


def test_tables_without_a_ttl_in_the_catalogue_get_none(resources: dict[str, Any]) -> None:
    tables = by_property(resources, "AWS::DynamoDB::Table", "TableName")
    for t in TABLES:
        if not t.ttl_attribute:
            assert "TimeToLiveSpecification" not in tables[name("table", t.name)][1], t.name


def test_the_key_rotates_and_has_the_prefix_alias(template: Any) -> None:
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.has_resource_properties("AWS::KMS::Alias", {"AliasName": f"alias/{PREFIX}"})


# -- buckets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", BUCKETS, ids=lambda b: b.name)
def test_bucket_is_private_kms_encrypted_versioned_and_expires(template: Any,
                                                               bucket: Any) -> None:
    rules = [Match.object_like({
        "Id": r.id, "Prefix": r.prefix, "Status": "Enabled", "ExpirationInDays": r.expire_days,
        **({"NoncurrentVersionExpiration": {"NoncurrentDays": r.noncurrent_days}}
           if bucket.versioned else {}),
        **({"TagFilters": [{"Key": r.tag[0], "Value": r.tag[1]}]} if r.tag else {}),
    }) for r in bucket.lifecycle]
    template.has_resource_properties("AWS::S3::Bucket", {
        "BucketName": name("bucket", bucket.name),
        "VersioningConfiguration": {"Status": "Enabled"} if bucket.versioned
        else Match.absent(),
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [Match.object_like({
            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                              "KMSMasterKeyID": Match.any_value()}})]},
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True},
        "LifecycleConfiguration": {"Rules": rules} if rules else Match.absent(),
        "LoggingConfiguration": Match.object_like({"LogFilePrefix": f"{bucket.name}/"}),
    })


@pytest.mark.parametrize("bucket", BUCKETS, ids=lambda b: b.name)
def test_bucket_refuses_requests_without_tls(resources: dict[str, Any], bucket: Any) -> None:
    logical_id = by_property(resources, "AWS::S3::Bucket", "BucketName")[
        name("bucket", bucket.name)][0]
    policies = [p for p in of_type(resources, "AWS::S3::BucketPolicy").values()
                if ref_id(p["Properties"]["Bucket"]) == logical_id]
    assert len(policies) == 1, bucket.name
    statements = policies[0]["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Action"] == "s3:*"
               and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements), bucket.name


def test_every_personal_data_prefix_has_an_expiring_rule(resources: dict[str, Any]) -> None:
    buckets = by_property(resources, "AWS::S3::Bucket", "BucketName")
    for b in BUCKETS:
        deployed = buckets[name("bucket", b.name)][1]["LifecycleConfiguration"]["Rules"]
        for prefix in b.expiring_prefixes:
            assert any(r["Prefix"].startswith(prefix) and r["ExpirationInDays"] >= 1
                       for r in deployed), (b.name, prefix)


def test_buckets_that_feed_rules_send_their_events_to_eventbridge(
        resources: dict[str, Any]) -> None:
    buckets = by_property(resources, "AWS::S3::Bucket", "BucketName")
    for b in BUCKETS:
        config = buckets[name("bucket", b.name)][1].get("NotificationConfiguration", {})
        enabled = config.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled", False)
        assert enabled is b.eventbridge, b.name


# -- code -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", TASKS, ids=lambda f: f.name)
def test_task_function_runs_its_handler_with_the_common_layer(
        resources: dict[str, Any], template: Any, fn: Any) -> None:
    layer = next(iter(of_type(resources, "AWS::Lambda::LayerVersion")))
    module, attr = fn.handler.split(".")[1:]
    template.has_resource_properties("AWS::Lambda::Function", {
        "FunctionName": name("function", fn.name),
        "Handler": f"{module}.{attr}",
        "Runtime": "python3.11",
        "Timeout": fn.timeout_seconds,
        "MemorySize": fn.memory_mb,
        "Layers": [{"Ref": layer}],
        "TracingConfig": {"Mode": "Active"},
        "Environment": {"Variables": Match.object_like({"OBLIO_RESOURCE_PREFIX": PREFIX,
                                                        "OBLIO_BULK_CONCURRENCY": "100"})},
    })


def test_the_layer_is_built_for_the_functions_runtime(template: Any) -> None:
    template.resource_count_is("AWS::Lambda::LayerVersion", 1)
    template.has_resource_properties("AWS::Lambda::LayerVersion", {
        "CompatibleRuntimes": ["python3.11"]})


def test_the_api_is_the_chalice_app_with_the_layer_and_its_own_role(
        resources: dict[str, Any], template: Any) -> None:
    [api] = [f for f in CATALOGUE.functions if is_chalice(f)]
    layer = next(iter(of_type(resources, "AWS::Lambda::LayerVersion")))
    settings = json.loads((ROOT / "chalice.json").read_text())["stages"]["dev"]
    template.has_resource_properties("AWS::Serverless::Function", {
        "FunctionName": name("function", api.name),
        "Handler": "app.app",
        "Layers": [{"Ref": layer}],
        "Timeout": api.timeout_seconds,
        "Role": {"Fn::GetAtt": [Match.string_like_regexp("^ApiRole"), "Arn"]},
        "Tracing": "Active",
        "Environment": {"Variables": Match.object_like(settings["environment_variables"])},
    })
    template.has_resource_properties("AWS::Serverless::Api", {
        "TracingEnabled": True,
        "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
        "MethodSettings": [Match.object_like({"DataTraceEnabled": False,
                                              "MetricsEnabled": True})],
    })
    # routes come from the app itself
    [body] = [r["Properties"]["DefinitionBody"]
              for r in of_type(resources, "AWS::Serverless::Api").values()]
    assert "/v1/requests" in body["paths"]


def test_every_function_and_the_layer_run_on_the_architecture_lambda_is_priced_for(
        resources: dict[str, Any]) -> None:
    """The price table prices Lambda's duration for one architecture (arm64, a fifth below
    x86_64): every function of the catalogue is deployed on it, the layer is declared for
    it, and its wheels are installed for its platform."""
    from infra.cdk import layer
    from oblio.core.prices import LAMBDA_ARCHITECTURE, PRICES

    assert LAMBDA_ARCHITECTURE == "arm64" and "arm64" in PRICES["lambda.gb_second"].unit
    functions = {**of_type(resources, "AWS::Lambda::Function"),
                 **of_type(resources, "AWS::Serverless::Function")}  # the API's, by Chalice
    mine = [f for f in functions.values()
            if str(f["Properties"].get("FunctionName", "")).startswith(f"{PREFIX}-")]
    assert len(mine) >= len(CATALOGUE.functions)
    assert {tuple(f["Properties"].get("Architectures", ["x86_64"])) for f in mine} == {
        ("arm64",)}
    (lay,) = of_type(resources, "AWS::Lambda::LayerVersion").values()
    assert lay["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer.PLATFORM.endswith("_aarch64")


# -- workflows --------------------------------------------------------------------------------


@pytest.mark.parametrize("sm", CATALOGUE.state_machines, ids=lambda s: s.name)
def test_state_machine_fills_each_placeholder_from_the_catalogue(
        resources: dict[str, Any], sm: Any) -> None:
    functions = by_property(resources, "AWS::Lambda::Function", "FunctionName")
    machines = by_property(resources, "AWS::StepFunctions::StateMachine", "StateMachineName")
    _logical_id, props = machines[name("statemachine", sm.name)]
    assert "DefinitionS3Location" in props  # DefinitionBody.from_file
    subs = props["DefinitionSubstitutions"]
    assert set(subs) == set(sm.functions) | set(sm.values)
    for placeholder, fn in sm.functions.items():
        assert subs[placeholder] == {"Fn::GetAtt": [functions[name("function", fn)][0], "Arn"]}
    for placeholder, (_local, aws) in sm.values.items():
        assert subs[placeholder] == aws
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False  # no payload in logs


def test_single_requests_run_express_with_a_standard_twin_for_the_large(
        resources: dict[str, Any]) -> None:
    """Erasure and anonymisation are Express in AWS: Work, a Choice and Finish, nothing that
    waits or iterates (an Express execution ends within 5 minutes); a large request runs in
    the Standard twin, which the Work function may start and the API may stop."""
    import json

    from infra.cdk.access import ACCESS
    from infra.cdk.validate import STATEMACHINES

    machines = by_property(resources, "AWS::StepFunctions::StateMachine", "StateMachineName")
    for small, large, work in (("erasure", "erasure_large", "work"),
                               ("anonymisation", "anonymisation_large", "work"),
                               ("access_export", "access_export_large", "export_work")):
        assert machines[name("statemachine", small)][1]["StateMachineType"] == "EXPRESS"
        assert machines[name("statemachine", large)][1].get("StateMachineType",
                                                            "STANDARD") == "STANDARD"
        states = json.loads((STATEMACHINES / f"{small}.asl.json").read_text())["States"]
        assert {s["Type"] for s in states.values()} <= {"Task", "Choice", "Succeed", "Fail"}
        assert ACCESS[work].starts and large in ACCESS[work].starts
        assert large in ACCESS["api"].stops


def test_distributed_maps_run_their_children_as_express_in_aws() -> None:
    # the catalogue's value for AWS; the local stack takes STANDARD (moto's parser)
    for sm in CATALOGUE.state_machines:
        if "ChildExecutionType" in sm.values:
            assert sm.values["ChildExecutionType"] == ("STANDARD", "EXPRESS"), sm.name


@pytest.mark.parametrize("sm", CATALOGUE.state_machines, ids=lambda s: s.name)
def test_state_machine_role_invokes_exactly_its_functions(resources: dict[str, Any],
                                                          sm: Any) -> None:
    functions = by_property(resources, "AWS::Lambda::Function", "FunctionName")
    machines = by_property(resources, "AWS::StepFunctions::StateMachine", "StateMachineName")
    role = ref_id(machines[name("statemachine", sm.name)][1]["RoleArn"])
    invoked = set()
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for s in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            if "lambda:InvokeFunction" in actions:
                invoked |= refs(s["Resource"])
    assert invoked == {functions[name("function", f)][0] for f in sm.functions.values()}


# -- events -----------------------------------------------------------------------------------


def test_the_event_bus_has_the_catalogue_name(template: Any) -> None:
    template.has_resource_properties("AWS::Events::EventBus", {
        "Name": name("bus", CATALOGUE.event_bus)})


@pytest.mark.parametrize("rule", routes(CATALOGUE), ids=lambda r: r.name)
def test_rule_targets_its_function_state_machine_or_queue_directly(
        resources: dict[str, Any], rule: Any) -> None:
    kinds = {"function": ("AWS::Lambda::Function", "FunctionName", "function"),
             "statemachine": ("AWS::StepFunctions::StateMachine", "StateMachineName",
                              "statemachine"),
             "queue": ("AWS::SQS::Queue", "QueueName", "queue")}
    kind, target = rule.target
    cfn_type, prop, name_kind = kinds[kind]
    target_id = by_property(resources, cfn_type, prop)[name(name_kind, target)][0]
    deployed = by_property(resources, "AWS::Events::Rule", "Name")[f"{PREFIX}-{rule.name}"][1]
    [t] = deployed["Targets"]
    assert refs(t["Arn"]) == {target_id}
    assert "DeadLetterConfig" in t and "RetryPolicy" in t
    if rule.bus == "oblio":
        bus = next(iter(of_type(resources, "AWS::Events::EventBus")))
        assert deployed["EventBusName"] == {"Ref": bus}
    else:
        assert deployed.get("EventBusName", "default") == "default"
    if rule.schedule:
        assert deployed["ScheduleExpression"] == rule.schedule
    if rule.pattern:
        expected = BUCKET_REF.sub(lambda m: name("bucket", m[1]), json.dumps(rule.pattern))
        assert deployed["EventPattern"] == json.loads(expected)


def test_bulk_uploads_reach_bulk_start_from_the_ingest_bucket(resources: dict[str, Any]) -> None:
    # the S3 -> EventBridge route of the design: the ingest bucket's object events under
    # bulk/, on the default bus (where S3 sends them), straight to the bulk_start function
    [upload] = [r for r in routes(CATALOGUE) if r.pattern and
                r.pattern.get("source") == ["aws.s3"]]
    assert upload.target == ("function", "bulk_start") and upload.bus == "default"
    deployed = by_property(resources, "AWS::Events::Rule", "Name")[f"{PREFIX}-{upload.name}"][1]
    assert deployed["EventPattern"]["detail"] == {
        "bucket": {"name": [name("bucket", "ingest")]}, "object": {"key": [{"prefix": "bulk/"}]}}
    assert "EventBusName" not in deployed
    start = by_property(resources, "AWS::Lambda::Function", "FunctionName")[
        name("function", "bulk_start")][0]
    assert deployed["Targets"][0]["Arn"] == {"Fn::GetAtt": [start, "Arn"]}


def test_targets_may_deliver_to_the_dead_letter_queue(resources: dict[str, Any]) -> None:
    queues = by_property(resources, "AWS::SQS::Queue", "QueueName")
    dlq = queues[f"{PREFIX}-dead-letters"][0]
    policies = [p for p in of_type(resources, "AWS::SQS::QueuePolicy").values()
                if {"Ref": dlq} in p["Properties"]["Queues"]]
    assert policies and any(
        s.get("Principal") == {"Service": "events.amazonaws.com"}
        for s in policies[0]["Properties"]["PolicyDocument"]["Statement"])


ASYNC_TARGETS = sorted({r.target[1] for r in routes(CATALOGUE) if r.target[0] == "function"})


def test_some_function_is_invoked_by_a_rule() -> None:
    assert {"bulk_start", "sweep_schedule"} <= set(ASYNC_TARGETS)


@pytest.mark.parametrize("function", ASYNC_TARGETS)
def test_an_event_a_function_fails_on_three_times_goes_to_the_dead_letter_queue(
        resources: dict[str, Any], function: str) -> None:
    # EventBridge hands the event to Lambda's queue and is done: its own dead-letter queue
    # never sees the function fail. Without an on-failure destination Lambda drops the event
    # after its two retries (a dropped CSV would wait in awaiting_upload for ever, a night's
    # sweeps would not start, and nothing would say so)
    fn = by_property(resources, "AWS::Lambda::Function", "FunctionName")[
        name("function", function)]
    dlq = by_property(resources, "AWS::SQS::Queue", "QueueName")[f"{PREFIX}-dead-letters"][0]
    [config] = [r["Properties"] for r in of_type(resources, "AWS::Lambda::EventInvokeConfig")
                .values() if r["Properties"]["FunctionName"] == {"Ref": fn[0]}]
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == 6 * 3600
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [dlq, "Arn"]}
    # Lambda sends the record with the function's role: it may, and may encrypt it
    role = refs(fn[1]["Role"])
    granted = [s for p in of_type(resources, "AWS::IAM::Policy").values()
               if refs(p["Properties"]["Roles"]) & role
               for s in p["Properties"]["PolicyDocument"]["Statement"]]
    send = [s for s in granted if refs(s["Resource"]) == {dlq}]
    assert any("sqs:SendMessage" in s["Action"] for s in send)
    key = next(iter(of_type(resources, "AWS::KMS::Key")))
    assert any("kms:GenerateDataKey" in s["Action"] for s in granted
               if refs(s["Resource"]) == {key})


def test_deployed_queues_are_the_catalogues_that_are_not_local_only(
        resources: dict[str, Any]) -> None:
    queues = set(by_property(resources, "AWS::SQS::Queue", "QueueName"))
    assert queues == {f"{PREFIX}-dead-letters",
                      *(name("queue", q.name) for q in CATALOGUE.queues if not q.local_only)}


# -- e-mail, operations -----------------------------------------------------------------------


def test_the_ses_sender_is_an_identity(template: Any) -> None:
    template.has_resource_properties("AWS::SES::EmailIdentity", {
        "EmailIdentity": CONTEXT["ses_sender"]})


def test_alarms_cover_failed_executions_function_errors_and_overdue_requests(
        resources: dict[str, Any]) -> None:
    alarms = by_property(resources, "AWS::CloudWatch::Alarm", "AlarmName")
    topic = next(k for k, v in of_type(resources, "AWS::SNS::Topic").items()
                 if v["Properties"]["TopicName"] == f"{PREFIX}-alarms")
    expected = {f"{PREFIX}-overdue-requests", f"{PREFIX}-dead-letters",
                *(f"{PREFIX}-{sm.name}-failed" for sm in CATALOGUE.state_machines),
                *(f"{PREFIX}-{f.name}-errors" for f in CATALOGUE.functions)}
    assert expected <= set(alarms)
    for alarm_name in expected:
        assert alarms[alarm_name][1]["AlarmActions"] == [{"Ref": topic}], alarm_name
    assert alarms[f"{PREFIX}-erasure-failed"][1]["MetricName"] == "ExecutionsFailed"
    assert alarms[f"{PREFIX}-overdue-requests"][1]["MetricName"] == "OverdueRequests"
    dead = alarms[f"{PREFIX}-dead-letters"][1]
    assert dead["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dead["Threshold"] == 1 and dead["ComparisonOperator"] == \
        "GreaterThanOrEqualToThreshold"
    dlq = by_property(resources, "AWS::SQS::Queue", "QueueName")[f"{PREFIX}-dead-letters"][0]
    assert dead["Dimensions"] == [{"Name": "QueueName",
                                   "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}]


def test_each_new_dead_letter_alarms_again_and_one_about_to_expire_too(
        resources: dict[str, Any]) -> None:
    """The waiting alarm stays in ALARM while a letter waits, so the next letter notified
    nobody, and a letter nobody handled was deleted by the queue's retention unannounced."""
    alarms = by_property(resources, "AWS::CloudWatch::Alarm", "AlarmName")
    dlq = by_property(resources, "AWS::SQS::Queue", "QueueName")[f"{PREFIX}-dead-letters"]
    queue_name = [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq[0], "QueueName"]}}]

    new = alarms[f"{PREFIX}-dead-letters-new"][1]
    [expression] = [m for m in new["Metrics"] if "Expression" in m]
    assert expression["Expression"] == "IF(DIFF(waiting) > 0 || sent > 0, 1, 0)"
    stats = {m["Id"]: m["MetricStat"] for m in new["Metrics"] if "MetricStat" in m}
    assert {k: (v["Metric"]["MetricName"], v["Stat"], v["Metric"]["Dimensions"])
            for k, v in stats.items()} == {
        "waiting": ("ApproximateNumberOfMessagesVisible", "Maximum", queue_name),
        "sent": ("NumberOfMessagesSent", "Sum", queue_name)}
    assert (new["Threshold"], new["TreatMissingData"]) == (1, "notBreaching")

    expiring = alarms[f"{PREFIX}-dead-letters-expiring"][1]
    assert expiring["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert expiring["Dimensions"] == queue_name
    retention = dlq[1]["MessageRetentionPeriod"]
    assert expiring["Threshold"] == 7 * 86400 < retention == 14 * 86400
    # a letter a queue's redrive moves keeps its first enqueue time: the queues it comes
    # from keep a message 4 days, so it has 10 days or more left, past the warning's 7
    sources = [q for name, q in by_property(resources, "AWS::SQS::Queue", "QueueName").items()
               if q[1].get("RedrivePolicy")]
    assert sources and all(q[1]["MessageRetentionPeriod"] == 4 * 86400 for q in sources)
    assert retention - 4 * 86400 > expiring["Threshold"]
    topic = next(k for k, v in of_type(resources, "AWS::SNS::Topic").items()
                 if v["Properties"]["TopicName"] == f"{PREFIX}-alarms")
    assert new["AlarmActions"] == expiring["AlarmActions"] == [{"Ref": topic}]


def test_alarms_are_e_mailed_to_the_configured_address(template: Any) -> None:
    template.has_resource_properties("AWS::SNS::Subscription", {
        "Protocol": "email", "Endpoint": CONTEXT["alarm_email"]})


def test_the_dashboard_shows_requests_by_status_and_type(resources: dict[str, Any]) -> None:
    [board] = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(board["Properties"]["DashboardBody"])
    for metric in ("RequestsCreated", "RequestsCompleted", "OverdueRequests",
                   "ExecutionsFailed", "Errors"):
        assert metric in body, metric


def test_function_logs_are_kept_for_the_configured_days(resources: dict[str, Any]) -> None:
    groups = by_property(resources, "AWS::Logs::LogGroup", "LogGroupName")
    for f in CATALOGUE.functions:
        group = groups[f"/aws/lambda/{name('function', f.name)}"][1]
        assert group["RetentionInDays"] == 90, f.name


# -- least privilege --------------------------------------------------------------------------


def _role_statements(resources: dict[str, Any], role: str) -> list[dict[str, Any]]:
    out = []
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _function_role(resources: dict[str, Any], fn: Any) -> str:
    if is_chalice(fn):
        [api] = of_type(resources, "AWS::Serverless::Function").values()
        return api["Properties"]["Role"]["Fn::GetAtt"][0]
    functions = by_property(resources, "AWS::Lambda::Function", "FunctionName")
    return functions[name("function", fn.name)][1]["Role"]["Fn::GetAtt"][0]


@pytest.mark.parametrize("fn", CATALOGUE.functions, ids=lambda f: f.name)
def test_function_role_reaches_exactly_the_tables_of_its_access_entry(
        resources: dict[str, Any], fn: Any) -> None:
    tables = {v: k for k, (v, _p) in
              {t: by_property(resources, "AWS::DynamoDB::Table", "TableName")[
                  name("table", t)] for t in (x.name for x in TABLES)}.items()}
    statements = _role_statements(resources, _function_role(resources, fn))
    reached: dict[str, set[str]] = {}
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        for logical_id in refs(s["Resource"]) & set(tables):
            reached.setdefault(tables[logical_id], set()).update(actions)
    entry = access.ACCESS[fn.name]
    assert set(reached) == set(entry.tables)
    for table, use in entry.tables.items():
        writes = any(a in reached[table] for a in access.DYNAMODB_WRITE)
        assert writes is (use == "rw"), table


@pytest.mark.parametrize("fn", CATALOGUE.functions, ids=lambda f: f.name)
def test_no_function_holds_a_service_wide_wildcard_action(resources: dict[str, Any],
                                                           fn: Any) -> None:
    for s in _role_statements(resources, _function_role(resources, fn)):
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert not [a for a in actions if a == "*" or a.endswith(":*")], (fn.name, s)


@pytest.mark.parametrize("fn", [f for f in CATALOGUE.functions
                                if access.ACCESS[f.name].tenant_data],
                         ids=lambda f: f.name)
def test_tenant_data_is_limited_to_the_configured_leading_keys(resources: dict[str, Any],
                                                               fn: Any) -> None:
    [tenant] = [s for s in _role_statements(resources, _function_role(resources, fn))
                if s.get("Sid") == "TenantTables"]
    keys = tenant["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert set(keys) >= set(CONTEXT["tenant_leading_keys"].split(","))
    writes = [a for a in tenant["Action"] if a in access.DYNAMODB_WRITE]
    assert bool(writes) is (access.ACCESS[fn.name].tenant_data == "rw")


def test_functions_without_tenant_data_in_their_entry_cannot_reach_tenant_tables(
        resources: dict[str, Any]) -> None:
    for fn in CATALOGUE.functions:
        if access.ACCESS[fn.name].tenant_data:
            continue
        sids = {s.get("Sid") for s in _role_statements(resources, _function_role(resources, fn))}
        assert not sids & {"TenantTables", "TenantObjects", "TenantBuckets"}, fn.name


def test_only_the_functions_that_start_a_workflow_may_start_it(resources: dict[str, Any]) -> None:
    machines = by_property(resources, "AWS::StepFunctions::StateMachine", "StateMachineName")
    for fn in CATALOGUE.functions:
        started = set()
        for s in _role_statements(resources, _function_role(resources, fn)):
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            if "states:StartExecution" in actions:
                started |= refs(s["Resource"])
        assert started == {machines[name("statemachine", sm)][0]
                           for sm in access.ACCESS[fn.name].starts}, fn.name


def test_only_the_declared_oblio_tables_may_be_scanned(resources: dict[str, Any]) -> None:
    tables = {by_property(resources, "AWS::DynamoDB::Table", "TableName")[
        name("table", t.name)][0]: t.name for t in TABLES}
    for fn in CATALOGUE.functions:
        scanned = set()
        for s in _role_statements(resources, _function_role(resources, fn)):
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            if "dynamodb:Scan" in actions:
                assert s.get("Sid") == "OblioTablesScan", (fn.name, s)
                scanned |= {tables[r] for r in refs(s["Resource"])}
        assert scanned == set(access.ACCESS[fn.name].scans), fn.name


def test_no_tenant_table_scan_when_limited_to_leading_keys(resources: dict[str, Any]) -> None:
    # a Scan carries no leading key: the session's synth limits tenants, so no role gets one
    for fn in CATALOGUE.functions:
        sids = {s.get("Sid") for s in _role_statements(resources, _function_role(resources, fn))}
        assert "TenantTablesScan" not in sids, fn.name


def test_the_console_ships_with_the_api(resources: dict[str, Any], synthesized: Any) -> None:
    [body] = [r["Properties"]["DefinitionBody"]
              for r in of_type(resources, "AWS::Serverless::Api").values()]
    assert {"/console", "/console/{asset}", "/v1/subjects/search"} <= set(body["paths"])
    # a CSV PUT as application/octet-stream reaches the function as its bytes
    assert "application/octet-stream" in body["x-amazon-apigateway-binary-media-types"]
    [api] = [r for r in of_type(resources, "AWS::Serverless::Function").values()
             if r["Properties"].get("Handler") == "app.app"]
    # the deployment package chalice.cdk built: the app, chalicelib and the console's files
    asset = api["Properties"]["CodeUri"]["Key"].removesuffix(".zip")
    found = [p for p in synthesized.template_path.parent.glob(f"asset.{asset}*")]
    assert found, f"no asset {asset} beside the template"
    if found[0].is_dir():
        names = {str(p.relative_to(found[0])) for p in found[0].rglob("*")}
    else:
        with zipfile.ZipFile(found[0]) as z:
            names = set(z.namelist())
    web = ROOT / "functions" / "api" / "chalicelib" / "web"
    assert {f"chalicelib/web/{f.name}" for f in web.iterdir()} <= names
    assert {"app.py", "chalicelib/console.py"} <= names


def test_the_operator_key_is_a_generated_encrypted_secret_only_the_api_reads(
        resources: dict[str, Any]) -> None:
    secrets = by_property(resources, "AWS::SecretsManager::Secret", "Name")
    logical, secret = secrets[name("secret", "operator-key")]
    assert "GenerateSecretString" in secret
    assert "KmsKeyId" in secret
    for fn in CATALOGUE.functions:
        reads = {r for s in _role_statements(resources, _function_role(resources, fn))
                 if "secretsmanager:GetSecretValue" in (
                     s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
                 for r in refs(s["Resource"])}
        assert reads == ({logical} if fn.name == "api" else set()), fn.name
