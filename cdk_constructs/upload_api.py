"""The photo service's front door: the upload bucket and an HTTP API for pre-signed uploads and results."""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.logs_key import stack_logs_key
from cdk_constructs.nag import acknowledge, logical_id
from cdk_constructs.python_lambda import PythonLambda

UPLOAD_PREFIX = "uploads/"

# Why the API's functions need no dead-letter queue (their cdk-nag acknowledgement).
API_INVOKED = "Invoked synchronously by API Gateway; a failure is the caller's HTTP error, nothing waits in a queue."


class UploadBucket(Construct):
    """KMS-encrypted, private, TLS-only bucket for phone uploads; originals expire after `retention`."""

    def __init__(self, scope: Construct, id_: str, *, retention: Duration, access_logs: s3.IBucket) -> None:
        super().__init__(scope, id_)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="Encrypts uploaded photos")
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="uploads/",
            removal_policy=RemovalPolicy.RETAIN,
            cors=[
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.POST],
                    allowed_origins=["*"],
                    allowed_headers=["*"],
                    max_age=3000,
                )
            ],
            lifecycle_rules=[
                s3.LifecycleRule(id="ExpireOriginals", prefix=UPLOAD_PREFIX, expiration=retention),
                s3.LifecycleRule(id="AbortIncomplete", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
        )
        acknowledge(
            self.bucket,
            (
                "NIST.800.53.R5-S3BucketReplicationEnabled",
                "Uploads are transient inputs kept for days; results live in DynamoDB with point-in-time recovery.",
            ),
            (
                "NIST.800.53.R5-S3BucketVersioningEnabled",
                "Each upload has a fresh UUID key and is never overwritten; versions would only delay expiry.",
            ),
        )


class PhotoApi(Construct):
    """HTTP API: `POST /uploads` (pre-signed POST) and `GET /results/{upload_id}`, IAM or JWT authorized."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        upload_bucket: s3.IBucket,
        results_table: dynamodb.ITable,
        auth: str,
        max_upload_bytes: int,
        url_expiry_seconds: int,
        jwt_issuer: str | None,
        jwt_audience: tuple[str, ...],
    ) -> None:
        super().__init__(scope, id_)
        common_env = {"MLBASE_AUTH_MODE": auth}
        self.presign = PythonLambda(
            self,
            "Presign",
            name="presign",
            description="Issues pre-signed POST forms for photo uploads",
            environment={
                **common_env,
                "MLBASE_UPLOAD_BUCKET": upload_bucket.bucket_name,
                "MLBASE_MAX_UPLOAD_BYTES": str(max_upload_bytes),
                "MLBASE_URL_EXPIRY_SECONDS": str(url_expiry_seconds),
            },
            reserved_concurrency=50,
            no_dead_letter_reason=API_INVOKED,
        )
        upload_bucket.grant_put(self.presign.function, f"{UPLOAD_PREFIX}*")
        acknowledge(
            self.presign.role,
            (
                f"AwsSolutions-IAM5[Resource::<{logical_id(upload_bucket)}.Arn>/uploads/*]",
                "The signed form lets the phone write one new key under uploads/; the key is random per request.",
            ),
            ("AwsSolutions-IAM5[Action::s3:Abort*]", "grant_put: lets an interrupted upload be aborted."),
            (
                "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
                "grant_put: uploads are encrypted with the bucket key.",
            ),
            ("AwsSolutions-IAM5[Action::kms:ReEncrypt*]", "grant_put: uploads are encrypted with the bucket key."),
        )
        self.results = PythonLambda(
            self,
            "Results",
            name="results",
            description="Returns a photo's classification to the user who uploaded it",
            environment={**common_env, "MLBASE_RESULTS_TABLE": results_table.table_name},
            reserved_concurrency=50,
            no_dead_letter_reason=API_INVOKED,
        )
        results_table.grant(self.results.function, "dynamodb:BatchGetItem", "dynamodb:GetItem")

        if auth == "jwt":
            authorizer: apigw.IHttpRouteAuthorizer = authorizers.HttpJwtAuthorizer(
                "Jwt", jwt_issuer or "", jwt_audience=list(jwt_audience)
            )
        else:
            authorizer = authorizers.HttpIamAuthorizer()
        self.api = apigw.HttpApi(self, "Api", description="mlbase photo service API", create_default_stage=False)
        self.api.add_routes(
            path="/uploads",
            methods=[apigw.HttpMethod.POST],
            integration=integrations.HttpLambdaIntegration("PresignIntegration", self.presign.function),
            authorizer=authorizer,
        )
        self.api.add_routes(
            path="/results/{upload_id}",
            methods=[apigw.HttpMethod.GET],
            integration=integrations.HttpLambdaIntegration("ResultsIntegration", self.results.function),
            authorizer=authorizer,
        )
        # The access log holds every caller's source IP: encrypted with the stack's logs key.
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            encryption_key=stack_logs_key(self),
            removal_policy=RemovalPolicy.DESTROY,
        )
        stage = apigw.HttpStage(
            self,
            "Stage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=200, burst_limit=400),
        )
        # The L2 stage wants a jsii interface object here; the CloudFormation property says the same plainly.
        cfn_stage = stage.node.default_child
        assert isinstance(cfn_stage, apigw.CfnStage)
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=access_logs.log_group_arn,
            format=json.dumps(
                {
                    "requestId": "$context.requestId",
                    "ip": "$context.identity.sourceIp",
                    "caller": "$context.identity.caller",
                    "user": "$context.identity.user",
                    "requestTime": "$context.requestTime",
                    "httpMethod": "$context.httpMethod",
                    "routeKey": "$context.routeKey",
                    "status": "$context.status",
                    "protocol": "$context.protocol",
                    "responseLength": "$context.responseLength",
                    "authorizerError": "$context.authorizer.error",
                }
            ),
        )
        self.url = stage.url

    def grant_invoke(self, grantee: iam.Role) -> None:
        """Let the app backend call both routes with SigV4 (IAM auth mode) and name the end user in a header.

        Both functions learn the role's unique ID: a signed call from any other principal gets 403, even one that
        some broader policy allows `execute-api:Invoke`.
        """
        for function in (self.presign.function, self.results.function):
            function.add_environment("MLBASE_BACKEND_ROLE_ID", grantee.role_id)
        grantee.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["execute-api:Invoke"],
                resources=[
                    self.api.arn_for_execute_api("POST", "/uploads"),
                    self.api.arn_for_execute_api("GET", "/results/*"),
                ],
            )
        )
        api = logical_id(self.api)
        stack = Stack.of(self)
        acknowledge(
            grantee,
            (
                f"AwsSolutions-IAM5[Resource::arn:aws:execute-api:{stack.region}:{stack.account}:<{api}>/*/POST/uploads]",
                "Any stage of this API, one route.",
            ),
            (
                f"AwsSolutions-IAM5[Resource::arn:aws:execute-api:{stack.region}:{stack.account}:<{api}>/*/GET/results/*]",
                "Any stage, the results route for any upload ID: the Lambda returns only the named user's results.",
            ),
        )
