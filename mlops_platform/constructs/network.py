"""Optional private network: isolated subnets, no internet, AWS services through endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from ..compliance import acknowledge

# Interface endpoints every SageMaker job, endpoint and platform Lambda needs without internet.
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "SageMakerApi": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    "SageMakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "CloudWatchLogs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    # The monitoring job publishes its drift and quality metrics (PutMetricData).
    "CloudWatchMetrics": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
}
# With a managed MLflow tracking server: training jobs log to it through SageMaker's MLflow
# endpoint (aws.sagemaker.<region>.experiments), the only way to it from isolated subnets.
MLFLOW_ENDPOINT = ("SageMakerMlflow", ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_EXPERIMENTS)


@dataclass(frozen=True)
class PlatformNetworkProps:
    cidr: str
    availability_zones: tuple[str, ...]
    key: kms.IKey
    flow_log_retention: logs.RetentionDays
    removal_policy: RemovalPolicy
    mlflow_endpoint: bool = False


class PlatformNetwork(Construct):
    """VPC with private isolated subnets only (no NAT, no internet gateway).

    ``workload_security_group`` is for SageMaker jobs, endpoints and Lambdas: it allows traffic
    between its members (distributed training needs it) and to the endpoints over HTTPS.
    """

    def __init__(self, scope: Construct, construct_id: str, props: PlatformNetworkProps) -> None:
        super().__init__(scope, construct_id)
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            encryption_key=props.key,
            retention=props.flow_log_retention,
            removal_policy=props.removal_policy,
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(props.cidr),
            availability_zones=list(props.availability_zones),
            nat_gateways=0,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22
                )
            ],
            flow_logs={
                "all": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
        )
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.workload_security_group = ec2.SecurityGroup(
            self,
            "WorkloadSecurityGroup",
            vpc=self.vpc,
            description="SageMaker jobs, endpoints and platform Lambdas",
            allow_all_outbound=False,
        )
        self.workload_security_group.add_ingress_rule(
            self.workload_security_group, ec2.Port.all_tcp(),
            "Members talk to each other (distributed training, endpoint containers)",
        )
        self.workload_security_group.add_egress_rule(
            self.workload_security_group, ec2.Port.all_tcp(), "Members talk to each other"
        )
        # HTTPS egress reaches only the endpoints: isolated subnets have no route to the
        # internet, and the S3 gateway endpoint's prefix list id cannot be resolved offline.
        self.workload_security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.HTTPS, "AWS services through VPC endpoints"
        )
        self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.subnets]
        )
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Interface endpoints: HTTPS from platform workloads only",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(
            self.workload_security_group, ec2.Port.HTTPS, "Platform workloads call AWS APIs"
        )
        endpoints = {**INTERFACE_ENDPOINTS, **dict([MLFLOW_ENDPOINT] if props.mlflow_endpoint else [])}
        for name, service in endpoints.items():
            self.vpc.add_interface_endpoint(
                name, service=service, subnets=self.subnets, private_dns_enabled=True,
                security_groups=[self.endpoint_security_group], open=False,
            )
        flow_log_role = self.vpc.node.find_child("all").node.find_child("IAMRole")
        acknowledge(
            flow_log_role.node.find_child("DefaultPolicy"), "NIST.800.53.R5-IAMNoInlinePolicy",
            "CDK writes the flow-log role's policy; it only lets VPC Flow Logs write to this "
            "VPC's log group.",
        )
