"""oblio's AWS stack, generated from the resource catalogue (`infra.catalogue.CATALOGUE`):
every non-demo table, bucket, queue, topic, function, state machine and event rule of the
catalogue becomes the AWS resource of the same physical name, `<prefix>-<name>`, the name the
runtime computes from OBLIO_RESOURCE_PREFIX. Adding a table or a state machine to the
catalogue adds it here; nothing in this module names a catalogue entry, except where a
comment says why.

Around them: the deployment's KMS key (alias/<prefix>), the event bus, the Lambda layer, a
role per function (`infra/cdk/access.py`), logs, X-Ray, alarms and a dashboard.
"""

from __future__ import annotations

import json
from typing import Any

import jsii
from aws_cdk import (
    AssetHashType,
    Aws,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Stack,
    Tags,
)
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as ddb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ses as ses
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.catalogue import CATALOGUE, Bucket, Catalogue, Function, StateMachine, Table
from infra.catalogue import physical_name as _physical_name
from infra.cdk import access as access_map
from infra.cdk import layer as layer_build
from infra.cdk.access import (
    DYNAMODB_READ,
    DYNAMODB_WRITE,
    S3_BUCKET_ACTIONS,
    S3_OBJECT_ACTIONS,
    Access,
)
from infra.cdk.api import chalice_api, gateway_responses
from infra.cdk.config import DeployConfig
from infra.cdk.nag import suppress
from infra.cdk.routes import Route, routes
from infra.cdk.validate import (
    BUCKET_REF,
    FUNCTIONS,
    STATEMACHINES,
    definition_text,
    is_chalice,
    states,
)
from oblio.core.prices import LAMBDA_ARCHITECTURE

PYTHON = lambda_.Runtime.PYTHON_3_11
#: every function and the layer run on the architecture Lambda is priced for
ARCHITECTURE = {"arm64": lambda_.Architecture.ARM_64,
                "x86_64": lambda_.Architecture.X86_64}[LAMBDA_ARCHITECTURE]
#: Distributed Map item readers read the manifests oblio writes, always to this bucket
MANIFEST_BUCKET = "work"
#: EventBridge target retries before an event goes to the dead-letter queue
TARGET_RETRIES = 8
#: Lambda's own retries of an asynchronous invocation (EventBridge hands its event to the
#: function's queue, then is done) before the event goes to the dead-letter queue, and how
#: long an event may wait there for a try
ASYNC_RETRIES = 2
ASYNC_EVENT_AGE = Duration.hours(6)
#: how long the dead-letter queue keeps a letter (SQS's longest), and when an alarm says one
#: has waited long enough to be lost soon
DEAD_LETTER_RETENTION_DAYS = 14
DEAD_LETTER_WARNING_DAYS = 7
#: how long a queue whose redrive policy feeds the dead-letter queue keeps a message (SQS's
#: default): a letter moved from it keeps its first enqueue time, so the dead-letter queue
#: keeps it at least 10 days, past the warning
SOURCE_RETENTION_DAYS = 4


def _id(name: str) -> str:
    """A construct id from a catalogue name: `bulk_jobs` -> `BulkJobs`."""
    return "".join(p[:1].upper() + p[1:] for p in name.replace("-", "_").split("_"))


def _attr_type(k: Any) -> ddb.AttributeType:
    return ddb.AttributeType.NUMBER if k.type == "N" else ddb.AttributeType.STRING


def iam_name(name: str) -> str:
    """A data map's table or bucket name as an IAM resource name: a silo name (a template of
    the tenant, `{tenant}-employees`) grants every tenant's (`*-employees`), never the literal
    braces."""
    return name.replace("{tenant}", "*")


class OblioStack(Stack):
    """Everything oblio needs in one account and region."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig,
                 catalogue: Catalogue = CATALOGUE, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, description=(
            "oblio: GDPR data-subject rights engine (API, workflows, tables, buckets)"),
            **kwargs)
        self.config = config
        self.catalogue = catalogue
        self.prefix = config.prefix
        Tags.of(self).add("project", "oblio")
        Tags.of(self).add("oblio:prefix", self.prefix)

        self.key = self._key()
        self.access_logs = self._access_log_bucket()
        self.tables = {t.name: self._table(t) for t in catalogue.tables if not t.demo}
        self.buckets = {b.name: self._bucket(b) for b in catalogue.buckets if not b.demo}
        self.bus = events.EventBus(self, "Bus", event_bus_name=self.physical("bus",
                                                                            catalogue.event_bus))
        self.dead_letters = self._dead_letter_queue()
        self.queues = {q.name: self._queue(q.name) for q in catalogue.queues if not q.local_only}
        self.topics = {t.name: self._topic(t.name) for t in catalogue.topics}
        self.secrets = {sec.name: self._secret(sec.name, sec.purpose)
                        for sec in catalogue.secrets}
        self.alarm_topic = self._alarm_topic()
        self.ses_identity = self._ses_identity()
        self.layer = self._layer()
        self.function_env = self._environment()
        self.roles: dict[str, iam.Role] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.functions: dict[str, lambda_.IFunction] = {}
        self.state_machines: dict[str, sfn.StateMachine] = {}
        for f in catalogue.functions:
            self.roles[f.name] = self._role(f)
        for f in catalogue.functions:
            if not is_chalice(f):
                self.functions[f.name] = self._function(f)
        for sm in catalogue.state_machines:
            self.state_machines[sm.name] = self._state_machine(sm)
        for f in catalogue.functions:  # state machines exist now: grant what each starts
            self._grant(f.name, self.roles[f.name], access_map.ACCESS[f.name])
        self.api = None
        for f in catalogue.functions:
            if is_chalice(f):
                self.api = self._api(f)
        rules = routes(catalogue, config.schedules)
        for rule in rules:
            self._rule(rule)
        self._async_failures(sorted({r.target[1] for r in rules if r.target[0] == "function"}))
        self._shadow_streams()
        self._alarms()
        self._dashboard()
        CfnOutput(self, "ResourcePrefix", value=self.prefix,
                  description="OBLIO_RESOURCE_PREFIX of this deployment")
        CfnOutput(self, "KeyArn", value=self.key.key_arn)
        CfnOutput(self, "EventBusName", value=self.bus.event_bus_name)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)

    def physical(self, kind: str, name: str) -> str:
        return _physical_name(self.prefix, kind, name)

    # -- encryption, storage --------------------------------------------------------------

    def _key(self) -> kms.Key:
        key = kms.Key(self, "Key", alias=f"alias/{self.prefix}", enable_key_rotation=True,
                      removal_policy=RemovalPolicy.RETAIN,
                      description=f"oblio ({self.prefix}): tables, buckets, queues, topics, "
                                  "tenant data keys")
        # EventBridge delivers to encrypted queues (targets, dead letters); CloudWatch alarms
        # publish to the encrypted alarm topic
        for service in ("events.amazonaws.com", "cloudwatch.amazonaws.com"):
            key.add_to_resource_policy(iam.PolicyStatement(
                principals=[iam.ServicePrincipal(service)],
                actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}))
        return key

    def _access_log_bucket(self) -> s3.Bucket:
        # S3 delivers server access logs only to SSE-S3 buckets; cdk-nag's S1 (no access
        # logs) knows a log target from the buckets that log into it
        bucket = s3.Bucket(
            self, "AccessLogs", encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, versioned=False,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(
                id="access-logs-expiry",
                expiration=Duration.days(self.config.access_log_days))])
        return bucket

    def _table(self, t: Table) -> ddb.Table:
        table = ddb.Table(
            self, f"{_id(t.name)}Table", table_name=self.physical("table", t.name),
            partition_key=ddb.Attribute(name=t.partition.name, type=_attr_type(t.partition)),
            sort_key=ddb.Attribute(name=t.sort.name, type=_attr_type(t.sort)) if t.sort else None,
            billing_mode=ddb.BillingMode.PAY_PER_REQUEST,
            encryption=ddb.TableEncryption.CUSTOMER_MANAGED, encryption_key=self.key,
            point_in_time_recovery_specification=ddb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=t.ttl_attribute,
            deletion_protection=self.config.deletion_protection,
            removal_policy=RemovalPolicy.RETAIN)
        for i in t.indexes:
            table.add_global_secondary_index(
                index_name=i.name,
                partition_key=ddb.Attribute(name=i.partition.name, type=_attr_type(i.partition)),
                sort_key=ddb.Attribute(name=i.sort.name, type=_attr_type(i.sort))
                if i.sort else None,
                projection_type=ddb.ProjectionType.ALL if i.projection == "ALL"
                else ddb.ProjectionType.KEYS_ONLY)
        return table

    def _bucket(self, b: Bucket) -> s3.Bucket:
        bucket = s3.Bucket(
            self, f"{_id(b.name)}Bucket", bucket_name=self.physical("bucket", b.name),
            versioned=b.versioned, encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key, bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{b.name}/",
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(
                id=r.id, prefix=r.prefix, expiration=Duration.days(r.expire_days),
                noncurrent_version_expiration=Duration.days(r.noncurrent_days)
                if b.versioned else None,
                abort_incomplete_multipart_upload_after=Duration.days(1),
                tag_filters=dict([r.tag]) if r.tag else None) for r in b.lifecycle])
        if b.eventbridge:
            # straight on the bucket: CDK's event_bridge_enabled would add a custom-resource
            # Lambda to do the same
            cfn = bucket.node.default_child
            assert isinstance(cfn, s3.CfnBucket)
            cfn.add_property_override(
                "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True)
        return bucket

    def _dead_letter_queue(self) -> sqs.Queue:
        # cdk-nag's SQS3 (a queue without a dead-letter queue) knows this one is one
        queue = sqs.Queue(self, "DeadLetters", queue_name=self.physical("queue", "dead-letters"),
                          encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.key,
                          enforce_ssl=True,
                          retention_period=Duration.days(DEAD_LETTER_RETENTION_DAYS))
        return queue

    def _queue(self, name: str) -> sqs.Queue:
        return sqs.Queue(self, f"{_id(name)}Queue", queue_name=self.physical("queue", name),
                         encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.key,
                         enforce_ssl=True,
                         retention_period=Duration.days(SOURCE_RETENTION_DAYS),
                         dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5,
                                                               queue=self.dead_letters))

    def _topic(self, name: str) -> sns.Topic:
        return sns.Topic(self, f"{_id(name)}Topic", topic_name=self.physical("topic", name),
                         master_key=self.key, enforce_ssl=True)

    def _secret(self, name: str, purpose: str) -> secretsmanager.Secret:
        # the value is generated at deploy, encrypted with the deployment's key; an operator
        # reads it from Secrets Manager and replaces it to rotate it (the API reads it again
        # within five minutes)
        secret = secretsmanager.Secret(
            self, f"{_id(name)}Secret", secret_name=self.physical("secret", name),
            description=purpose, encryption_key=self.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=48, exclude_punctuation=True))
        suppress(secret, "operator-key-rotation")
        return secret

    def _alarm_topic(self) -> sns.Topic:
        topic = sns.Topic(self, "AlarmTopic", topic_name=self.physical("topic", "alarms"),
                          master_key=self.key, enforce_ssl=True)
        if self.config.alarm_email:
            topic.add_subscription(subs.EmailSubscription(self.config.alarm_email))
        return topic

    def _ses_identity(self) -> ses.EmailIdentity | None:
        sender = self.config.ses_sender
        if not sender:
            return None
        identity = ses.Identity.domain(sender.split("@", 1)[1]) \
            if self.config.ses_identity == "domain" else ses.Identity.email(sender)
        return ses.EmailIdentity(self, "SesSender", identity=identity)

    # -- code -----------------------------------------------------------------------------

    def _layer(self) -> lambda_.LayerVersion:
        path, digest = layer_build.build(self.config.layer_deps, self.config.datamap)
        return lambda_.LayerVersion(
            self, "CommonLayer", layer_version_name=f"{self.prefix}-common",
            description="the oblio domain package and its runtime dependencies",
            code=lambda_.Code.from_asset(str(path), asset_hash=digest,
                                         asset_hash_type=AssetHashType.CUSTOM),
            compatible_runtimes=[PYTHON],
            compatible_architectures=[ARCHITECTURE])

    def _environment(self) -> dict[str, str]:
        env = {"OBLIO_RESOURCE_PREFIX": self.prefix, "OBLIO_ACCOUNT_ID": Aws.ACCOUNT_ID,
               "POWERTOOLS_METRICS_NAMESPACE": "oblio", "POWERTOOLS_LOG_LEVEL": "INFO",
               "OBLIO_BULK_CONCURRENCY": str(self.config.bulk_concurrency)}
        if self.config.ses_sender:
            env["OBLIO_SES_SENDER"] = self.config.ses_sender
        if self.config.datamap:
            env["OBLIO_DATAMAP"] = f"/opt/{layer_build.DATAMAP_IN_LAYER}"
        if self.config.public_base_url:
            env["OBLIO_PUBLIC_BASE_URL"] = self.config.public_base_url
        return env

    def _log_group(self, construct_id: str, name: str) -> logs.LogGroup:
        group = logs.LogGroup(self, construct_id, log_group_name=name,
                              removal_policy=RemovalPolicy.DESTROY)
        cfn = group.node.default_child
        assert isinstance(cfn, logs.CfnLogGroup)
        cfn.retention_in_days = self.config.log_retention_days
        return group

    def _role(self, f: Function) -> iam.Role:
        role = iam.Role(self, f"{_id(f.name)}Role",
                        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"oblio function {f.name}: {f.purpose}"[:1000])
        group = self._log_group(f"{_id(f.name)}Logs",
                                f"/aws/lambda/{self.physical('function', f.name)}")
        group.grant_write(role)
        self.log_groups[f.name] = group
        # the functions trace with X-Ray (Powertools Tracer); X-Ray has no resource ARNs
        role.add_to_policy(iam.PolicyStatement(
            actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"]))
        suppress(role, "xray")
        return role

    def _function(self, f: Function) -> lambda_.Function:
        package, *handler = f.handler.split(".")
        fn = lambda_.Function(
            self, f"{_id(f.name)}Function", function_name=self.physical("function", f.name),
            description=f.purpose[:256], runtime=PYTHON,
            architecture=ARCHITECTURE,
            code=lambda_.Code.from_asset(str(FUNCTIONS / package),
                                         exclude=["__pycache__", "*.pyc"]),
            handler=".".join(handler), role=self.roles[f.name], layers=[self.layer],
            environment=dict(self.function_env), timeout=Duration.seconds(f.timeout_seconds),
            memory_size=f.memory_mb, tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_groups[f.name])
        suppress(fn, "python-runtime")
        return fn

    def _api(self, f: Function) -> Any:
        api, _settings = chalice_api(
            self, f, role_arn=self.roles[f.name].role_arn,
            layer_arn=self.layer.layer_version_arn,
            function_name=self.physical("function", f.name),
            environment=self.function_env, chalice_stage=self.config.chalice_stage)
        access_log = self._log_group("ApiAccessLogs", f"/aws/apigateway/{self.prefix}-api")
        rest = api.get_resource("RestAPI")
        # no identity in an access log line: no query string, no source IP, no body
        rest.add_property_override("AccessLogSetting", {
            "DestinationArn": access_log.log_group_arn,
            "Format": json.dumps({
                "requestId": "$context.requestId", "time": "$context.requestTime",
                "method": "$context.httpMethod", "resource": "$context.resourcePath",
                "status": "$context.status", "latencyMs": "$context.responseLatency",
                "integrationError": "$context.integrationErrorMessage"})})
        rest.add_property_override("TracingEnabled", True)
        gateway_responses(self, rest.ref)  # 404, 415, 429, ... in the one error shape
        rest.add_property_override("MethodSettings", [{
            "ResourcePath": "/*", "HttpMethod": "*", "MetricsEnabled": True,
            "LoggingLevel": "ERROR", "DataTraceEnabled": False,
            "ThrottlingRateLimit": self.config.api_throttle_rate,
            "ThrottlingBurstLimit": self.config.api_throttle_burst}])
        if self.config.api_cloudwatch_role:
            role = iam.Role(self, "ApiGatewayCloudWatchRole",
                            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
                            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(
                                "service-role/AmazonAPIGatewayPushToCloudWatchLogs")])
            suppress(role, "apigw-logs-role")
            account = apigw.CfnAccount(self, "ApiGatewayAccount",
                                       cloud_watch_role_arn=role.role_arn)
            rest.add_resource_dependency(account)
        return api

    # -- permissions ----------------------------------------------------------------------

    def _object_arns(self, name: str) -> list[str]:
        bucket, b = self.buckets[name], self.catalogue.bucket(name)
        return [bucket.arn_for_objects(f"{p}*") for p in b.expiring_prefixes] or \
            [bucket.arn_for_objects("*")]

    def _tenant_tables(self) -> list[str]:
        if self.config.tenant_table_arns:
            arns = list(self.config.tenant_table_arns)
        elif self.config.datamap:
            from oblio.core import datamap

            dm = datamap.load(self.config.datamap)
            arns = [self.format_arn(service="dynamodb", resource="table",
                                    resource_name=iam_name(t.table)) for t in dm.tables.values()]
        else:
            arns = [self.format_arn(service="dynamodb", resource="table", resource_name="*")]
        return sorted({*arns, *(f"{a}/index/*" for a in arns if not a.endswith("/*"))})

    def _tenant_buckets(self) -> list[str]:
        if self.config.tenant_bucket_arns:
            return list(self.config.tenant_bucket_arns)
        if self.config.datamap:
            from oblio.core import datamap

            dm = datamap.load(self.config.datamap)
            return sorted(f"arn:{Aws.PARTITION}:s3:::{iam_name(b)}"
                          for b in set(dm.buckets.values()))
        return [f"arn:{Aws.PARTITION}:s3:::*"]

    def _grant(self, name: str, role: iam.Role, a: Access) -> None:
        """The role's least-privilege statements, from the function's access entry."""
        for use in ("r", "rw"):
            resources = []
            for t in sorted(n for n, u in a.tables.items() if u == use):
                table, entry = self.tables[t], self.catalogue.table(t)
                resources += [table.table_arn,
                              *(f"{table.table_arn}/index/{i.name}" for i in entry.indexes)]
            if resources:
                role.add_to_policy(iam.PolicyStatement(
                    sid=f"OblioTables{use.upper()}", resources=resources,
                    actions=[*DYNAMODB_READ, *(DYNAMODB_WRITE if use == "rw" else ())]))
        if a.scans:
            role.add_to_policy(iam.PolicyStatement(
                sid="OblioTablesScan", actions=["dynamodb:Scan"],
                resources=[self.tables[t].table_arn for t in sorted(a.scans)]))
        for b, ops in sorted(a.buckets.items()):
            actions = [x for op in ops for x in S3_OBJECT_ACTIONS.get(op, ())]
            if actions:
                suppress(role, "object-prefixes")
                role.add_to_policy(iam.PolicyStatement(
                    sid=f"{_id(b)}Objects", actions=actions, resources=self._object_arns(b)))
            listing = [x for op in ops for x in S3_BUCKET_ACTIONS.get(op, ())]
            if listing:
                role.add_to_policy(iam.PolicyStatement(
                    sid=f"{_id(b)}Listing", actions=listing,
                    resources=[self.buckets[b].bucket_arn]))
        writes = a.encrypt or "rw" in a.tables.values()
        role.add_to_policy(iam.PolicyStatement(
            sid="DeploymentKey", resources=[self.key.key_arn],
            actions=["kms:Decrypt", "kms:DescribeKey",
                     *(("kms:Encrypt", "kms:GenerateDataKey") if writes else ())]))
        if a.tenant_data:
            self._grant_tenant_data(role, a.tenant_data, scan=a.tenant_scan)
        if a.starts:
            role.add_to_policy(iam.PolicyStatement(
                sid="StartExecutions", actions=["states:StartExecution"],
                resources=[self.state_machines[sm].state_machine_arn for sm in a.starts]))
        if a.stops:
            role.add_to_policy(iam.PolicyStatement(
                sid="StopExecutions", actions=["states:StopExecution"],
                resources=[self._executions(sm) for sm in a.stops]))
            suppress(role, "executions")
        if a.events:
            role.add_to_policy(iam.PolicyStatement(
                sid="PutEvents", actions=["events:PutEvents"],
                resources=[self.bus.event_bus_arn]))
        if a.email and self.ses_identity is not None:
            role.add_to_policy(iam.PolicyStatement(
                sid="SendEmail", actions=["ses:SendEmail"],
                resources=[self.format_arn(service="ses", resource="identity",
                                           resource_name=self.ses_identity.email_identity_name)]))
        if a.topics:
            role.add_to_policy(iam.PolicyStatement(
                sid="Publish", actions=["sns:Publish"],
                resources=[self.topics[t].topic_arn for t in a.topics]))
        if a.secrets:
            role.add_to_policy(iam.PolicyStatement(
                sid="ReadSecrets", actions=["secretsmanager:GetSecretValue"],
                resources=[self.secrets[n].secret_arn for n in a.secrets]))

    def _grant_tenant_data(self, role: iam.Role, use: str, scan: bool = False) -> None:
        conditions: dict[str, Any] = {}
        if self.config.tenant_leading_keys:
            # a tenant's partition keys: its id, and `<id>#...` (the retention sweep index
            # is partitioned by `<tenant>#<YYYY-MM>`)
            keys = self.config.tenant_leading_keys
            conditions = {"ForAllValues:StringLike": {
                "dynamodb:LeadingKeys": [*keys, *(f"{k}#*" for k in keys)]}}
        role.add_to_policy(iam.PolicyStatement(
            sid="TenantTables", resources=self._tenant_tables(), conditions=conditions or None,
            actions=[*DYNAMODB_READ, *(DYNAMODB_WRITE if use == "rw" else ())]))
        if scan and not self.config.tenant_leading_keys:
            # the retention sweep's fallback for a table without a sweep index; a Scan has
            # no leading key, so a deployment limited to some tenants' keys gets none
            role.add_to_policy(iam.PolicyStatement(
                sid="TenantTablesScan", resources=self._tenant_tables(),
                actions=["dynamodb:Scan"]))
        buckets = self._tenant_buckets()
        same_account = {"StringEquals": {"s3:ResourceAccount": Aws.ACCOUNT_ID}}
        role.add_to_policy(iam.PolicyStatement(
            sid="TenantObjects", resources=[f"{b}/*" for b in buckets],
            conditions=same_account if not self.config.tenant_bucket_arns else None,
            actions=["s3:GetObject", *(("s3:DeleteObject", "s3:DeleteObjectVersion")
                                       if use == "rw" else ())]))
        role.add_to_policy(iam.PolicyStatement(
            sid="TenantBuckets", resources=buckets,
            conditions=same_account if not self.config.tenant_bucket_arns else None,
            actions=["s3:ListBucket", "s3:ListBucketVersions"]))
        if self.config.tenant_kms_key_arns:
            role.add_to_policy(iam.PolicyStatement(
                sid="TenantKeys", resources=list(self.config.tenant_kms_key_arns),
                actions=["kms:Decrypt", "kms:DescribeKey",
                         *(("kms:Encrypt", "kms:GenerateDataKey") if use == "rw" else ())]))
        suppress(role, "tenant-tables", "tenant-buckets")

    def _executions(self, sm: str, separator: str = ":") -> str:
        return (f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:"
                f"{self.physical('statemachine', sm)}{separator}*")

    # -- workflows --------------------------------------------------------------------------

    def _state_machine(self, sm: StateMachine) -> sfn.StateMachine:
        name = self.physical("statemachine", sm.name)
        group = self._log_group(f"{_id(sm.name)}StateMachineLogs",
                                f"/aws/vendedlogs/states/{name}")
        definition = json.loads(definition_text(sm).replace("${", "$_{"))  # for inspection
        machine = sfn.StateMachine(
            self, f"{_id(sm.name)}StateMachine", state_machine_name=name,
            state_machine_type=sfn.StateMachineType[sm.aws_type],
            definition_body=sfn.DefinitionBody.from_file(str(STATEMACHINES / sm.definition)),
            definition_substitutions={
                **{p: self.functions[fn].function_arn for p, fn in sm.functions.items()},
                **{p: aws_value for p, (_local, aws_value) in sm.values.items()}},
            logs=sfn.LogOptions(destination=group, level=sfn.LogLevel.ALL,
                                include_execution_data=False),
            tracing_enabled=True, comment=sm.purpose or None)
        role = machine.role
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="InvokeTasks", actions=["lambda:InvokeFunction"],
            resources=sorted({self.functions[fn].function_arn for fn in sm.functions.values()},
                             key=str)))
        self._grant_distributed_map(sm, machine, definition)
        suppress(role, "sfn-logs")
        return machine

    def _grant_distributed_map(self, sm: StateMachine, machine: sfn.StateMachine,
                               definition: dict[str, Any]) -> None:
        """A Distributed Map starts child executions of its own state machine and reads its
        items from S3: its role needs both (CDK's DistributedMap construct would add them;
        a definition from a file gets them here)."""
        found = [s for s in states(definition)
                 if (s.get("ItemProcessor") or {}).get("ProcessorConfig", {}).get("Mode")
                 == "DISTRIBUTED"]
        if not found:
            return
        own = (f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:stateMachine:"
               f"{self.physical('statemachine', sm.name)}")
        role = machine.role
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="DistributedMapChildren", actions=["states:StartExecution"], resources=[own]))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="DistributedMapRuns",
            actions=["states:DescribeExecution", "states:StopExecution",
                     "states:RedriveExecution"],
            resources=[self._executions(sm.name, ":"), self._executions(sm.name, "/")]))
        suppress(role, "executions")
        if any(s.get("ItemReader") for s in found):
            role.add_to_principal_policy(iam.PolicyStatement(
                sid="ItemReader", actions=["s3:GetObject"],
                resources=self._object_arns(MANIFEST_BUCKET)))
            role.add_to_principal_policy(iam.PolicyStatement(
                sid="ItemReaderKey", actions=["kms:Decrypt"], resources=[self.key.key_arn]))
            suppress(role, "object-prefixes")

    # -- events -----------------------------------------------------------------------------

    def _rule(self, rule: Route) -> None:
        pattern = None
        if rule.pattern:
            text = json.dumps(rule.pattern)
            for name in set(BUCKET_REF.findall(text)):
                text = text.replace("${bucket:" + name + "}", self.physical("bucket", name))
            pattern = events.EventPattern(
                **{k.replace("-", "_"): v for k, v in json.loads(text).items()})
        bus = self.bus if rule.bus == "oblio" else None  # None: the account's default bus
        kind, name = rule.target
        common: dict[str, Any] = {"dead_letter_queue": self.dead_letters,
                                  "retry_attempts": TARGET_RETRIES,
                                  "max_event_age": Duration.hours(24)}
        if rule.input is not None:
            common["input"] = events.RuleTargetInput.from_object(rule.input)
        target: events.IRuleTarget
        if kind == "function":
            target = targets.LambdaFunction(self.functions[name], **common)
        elif kind == "statemachine":
            target = targets.SfnStateMachine(self.state_machines[name], **common)
        else:
            target = targets.SqsQueue(self.queues[name], **common)
        what = f"on {rule.schedule}" if rule.schedule else "events"
        events.Rule(self, f"{_id(rule.name)}Rule", rule_name=f"{self.prefix}-{rule.name}",
                    event_bus=bus, event_pattern=pattern,
                    schedule=events.Schedule.expression(rule.schedule) if rule.schedule
                    else None,
                    targets=[target], description=f"oblio: {rule.name}: {what} -> {kind} {name}")

    # -- operations -------------------------------------------------------------------------

    def _shadow_streams(self) -> None:
        """The shadow_stream function on each tenant table's stream (`shadow_stream_arns`):
        partial batch failures reported, a failing batch halved until the bad record is
        alone, retried 5 times, then its description sent to the dead-letter queue."""
        if "shadow_stream" not in self.functions:
            return
        fn = self.functions["shadow_stream"]
        arns = list(self.config.shadow_stream_arns)
        if arns:
            self.roles["shadow_stream"].add_to_policy(iam.PolicyStatement(
                sid="ReadShadowStreams", resources=arns,
                actions=["dynamodb:DescribeStream", "dynamodb:GetRecords",
                         "dynamodb:GetShardIterator", "dynamodb:ListStreams"]))
            # the failed batches' descriptions (ids and sequence numbers, no image)
            self._may_dead_letter(self.roles["shadow_stream"], "ShadowStreamFailures")
        for i, arn in enumerate(arns):
            lambda_.EventSourceMapping(
                self, f"ShadowStream{i}", target=fn, event_source_arn=arn,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON, batch_size=100,
                max_batching_window=Duration.seconds(1), bisect_batch_on_error=True,
                retry_attempts=5, report_batch_item_failures=True,
                on_failure=_QueueOnFailure(self.dead_letters))
        CfnOutput(self, "ShadowStreamConsumer", value=self.physical("function", "shadow_stream"),
                  description="the function to attach to the streams of tenant tables with "
                              "identities stored as typed (context value shadow_stream_arns)")

    def _async_failures(self, names: list[str]) -> None:
        """The functions EventBridge invokes (asynchronously: bulk_start on a dropped CSV,
        sweep_schedule at night): Lambda tries an event 3 times in all, as the local event
        pump does, then sends it to the dead-letter queue instead of dropping it. The
        record holds the event (a bucket and key, a schedule's input: no personal data) to
        invoke the function with again; the dead-letter alarm says one is waiting."""
        for name in names:
            lambda_.EventInvokeConfig(
                self, f"{_id(name)}AsyncFailures", function=self.functions[name],
                retry_attempts=ASYNC_RETRIES, max_event_age=ASYNC_EVENT_AGE,
                on_failure=_QueueDestination(self.dead_letters))
            self._may_dead_letter(self.roles[name], "AsyncFailures")

    def _may_dead_letter(self, role: iam.Role, sid: str) -> None:
        """Let a function's role send to the dead-letter queue, encrypted with the
        deployment key: exact actions, no wildcard (the CDK's own grant adds KMS ones)."""
        role.add_to_policy(iam.PolicyStatement(
            sid=sid, resources=[self.dead_letters.queue_arn],
            actions=["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]))
        role.add_to_policy(iam.PolicyStatement(
            sid=f"{sid}Key", resources=[self.key.key_arn],
            actions=["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"]))

    def _function_names(self) -> list[tuple[str, str]]:
        return [(f.name, self.physical("function", f.name)) for f in self.catalogue.functions]

    def _alarm(self, construct_id: str, name: str, metric: cw.IMetric, description: str,
               threshold: float = 1) -> cw.Alarm:
        alarm = cw.Alarm(self, construct_id, alarm_name=f"{self.prefix}-{name}", metric=metric,
                         threshold=threshold, evaluation_periods=1,
                         alarm_description=description,
                         comparison_operator=cw.ComparisonOperator
                         .GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                         treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        alarm.add_alarm_action(cw_actions.SnsAction(self.alarm_topic))
        return alarm

    def _alarms(self) -> None:
        five = Duration.minutes(5)
        for name, machine in self.state_machines.items():
            self._alarm(f"{_id(name)}FailedAlarm", f"{name}-failed",
                        machine.metric_failed(period=five, statistic="Sum"),
                        f"executions of state machine {name} failed (the request records "
                        "why; GET /v1/requests/{id})")
        for name, physical in self._function_names():
            self._alarm(f"{_id(name)}ErrorsAlarm", f"{name}-errors",
                        _lambda_metric("Errors", physical, five),
                        f"function {name} raised errors")
        self._alarm("DeadLettersAlarm", "dead-letters",
                    self.dead_letters.metric_approximate_number_of_messages_visible(
                        period=five, statistic="Maximum"),
                    "events wait in the dead-letter queue: an upload, a schedule, a rule "
                    "target or a stream batch that could not be handled after its retries "
                    "(README: When things fail, dead letters)")
        self._dead_letter_alarms(five)
        self._alarm("OverdueRequestsAlarm", "overdue-requests",
                    cw.Metric(namespace="oblio", metric_name="OverdueRequests",
                              statistic="Maximum", period=Duration.hours(1)),
                    "requests are past their due date (Art. 12(3)): "
                    "GET /v1/requests?overdue=true")

    def _dead_letter_alarms(self, period: Duration) -> None:
        """Beside the alarm that stays in ALARM while anything waits: one that fires again
        for each new dead letter (an alarm already in ALARM notifies nobody of the next),
        and one before the queue's retention deletes a letter nobody handled (the queues
        whose redrive moves letters there keep a message `SOURCE_RETENTION_DAYS`: a letter
        keeps its first enqueue time when moved, so it has at least the difference left
        there, more than the alarm's wait)."""
        queue = self.dead_letters
        self._alarm("NewDeadLettersAlarm", "dead-letters-new", cw.MathExpression(
            # sent by Lambda, EventBridge or an event source mapping (NumberOfMessagesSent),
            # or moved there by a queue's redrive policy (which that metric leaves out: the
            # count waiting went up)
            expression="IF(DIFF(waiting) > 0 || sent > 0, 1, 0)", label="new dead letters", period=period,
            using_metrics={
                "waiting": queue.metric_approximate_number_of_messages_visible(
                    period=period, statistic="Maximum"),
                "sent": queue.metric_number_of_messages_sent(period=period,
                                                             statistic="Sum")}),
            "a new event was put in the dead-letter queue since the last five minutes "
            "(README: When things fail, dead letters)")
        self._alarm("ExpiringDeadLettersAlarm", "dead-letters-expiring",
                    queue.metric_approximate_age_of_oldest_message(period=period,
                                                                   statistic="Maximum"),
                    f"a dead letter has waited {DEAD_LETTER_WARNING_DAYS} days: the queue "
                    f"deletes it after {DEAD_LETTER_RETENTION_DAYS} (at the latest: a letter "
                    "a queue's redrive moved there counts from when it was first sent); "
                    "list it and send it again (oblio dead-letters redrive) or handle it",
                    threshold=Duration.days(DEAD_LETTER_WARNING_DAYS).to_seconds())

    def _dashboard(self) -> None:
        hour = Duration.hours(1)

        def search(metric: str, label: str) -> cw.MathExpression:
            # every dimension set of the metric: the API adds a `service` dimension to the
            # type (and status) that the task functions emit, so no one schema fits all
            return cw.MathExpression(
                expression=f"SEARCH('Namespace=\"oblio\" MetricName=\"{metric}\"', "
                           "'Sum', 3600)",
                label=label, period=hour, using_metrics={})

        board = cw.Dashboard(self, "Dashboard", dashboard_name=f"{self.prefix}-requests")
        board.add_widgets(
            cw.GraphWidget(title="Requests received, by type", width=12,
                           left=[search("RequestsCreated", "")]),
            cw.GraphWidget(title="Requests ended, by status and type", width=12,
                           left=[search("RequestsCompleted", "")]))
        board.add_widgets(
            cw.SingleValueWidget(title="Overdue requests", width=6, metrics=[cw.Metric(
                namespace="oblio", metric_name="OverdueRequests", statistic="Maximum",
                period=hour)]),
            cw.GraphWidget(title="Executions failed", width=9, left=[
                m.metric_failed(period=hour, statistic="Sum", label=n)
                for n, m in self.state_machines.items()]),
            cw.GraphWidget(title="Function errors", width=9, left=[
                _lambda_metric("Errors", physical, hour, label=n)
                for n, physical in self._function_names()]))


@jsii.implements(lambda_.IEventSourceDlq)
class _QueueOnFailure:
    """An event source mapping's on-failure destination: the queue, with the grants the
    stack writes itself (the CDK's own adds KMS wildcards)."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    def bind(self, _target: Any, _handler: Any) -> lambda_.DlqDestinationConfig:
        return lambda_.DlqDestinationConfig(destination=self.queue.queue_arn)


@jsii.implements(lambda_.IDestination)
class _QueueDestination:
    """An asynchronous invocation's on-failure destination: the queue, with the grants the
    stack writes itself (`SqsDestination` would add KMS wildcards)."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    def bind(self, _scope: Any, _fn: Any, *, type: Any) -> lambda_.DestinationConfig:
        return lambda_.DestinationConfig(destination=self.queue.queue_arn)


def _lambda_metric(metric: str, function_name: str, period: Duration,
                   label: str | None = None) -> cw.Metric:
    return cw.Metric(namespace="AWS/Lambda", metric_name=metric, statistic="Sum",
                     period=period, dimensions_map={"FunctionName": function_name},
                     label=label)

