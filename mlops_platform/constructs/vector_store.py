"""Vector stores of the semantic-search indexes: Amazon S3 Vectors, or OpenSearch Serverless.

S3 Vectors (default): one vector bucket per environment, encrypted with the platform key, and an
index per configured search index (dimension, distance, the chunk text and bookkeeping keys
non-filterable). Near-zero idle cost: storage and requests only.

OpenSearch Serverless (option): one VECTORSEARCH collection per index with encryption (platform
key), network (public endpoint, IAM-authenticated) and data-access policies naming only the
platform roles given, and the k-NN index itself. It bills OCUs while idle (standby replicas are
disabled outside production).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_opensearchserverless as aoss
from aws_cdk import aws_s3vectors as s3vectors
from constructs import Construct

from ..config.models import SearchIndexConfig
from .naming import pascal

# Metadata the indexer writes that no search filters on (S3 Vectors: "non-filterable" keys can be large).
NON_FILTERABLE_KEYS = ("text", "chunk_count")
# The search queries (QueryVectors, with GetVectors for the metadata it returns); the indexer reads
# the chunks it replaces (GetVectors), puts and deletes, and never queries.
READ_ACTIONS = ("s3vectors:GetVectors", "s3vectors:QueryVectors")
WRITE_ACTIONS = ("s3vectors:GetVectors", "s3vectors:PutVectors", "s3vectors:DeleteVectors")


@dataclass(frozen=True)
class VectorStoreProps:
    name_prefix: str
    indexes: tuple[SearchIndexConfig, ...]
    key: kms.IKey
    production: bool


class VectorStores(Construct):
    """The stores of every configured index (the search settings name them:
    ``function_settings.search_json``)."""

    def __init__(self, scope: Construct, construct_id: str, props: VectorStoreProps) -> None:
        super().__init__(scope, construct_id)
        self._props = props
        stack = Stack.of(self)
        self._stack = stack
        self.vector_bucket_name = f"{props.name_prefix}-vectors"
        s3_indexes = [i for i in props.indexes if i.store == "s3vectors"]
        self.vector_bucket: s3vectors.CfnVectorBucket | None = None
        self.s3_indexes: dict[str, s3vectors.CfnIndex] = {}
        if s3_indexes:
            self.vector_bucket = s3vectors.CfnVectorBucket(
                self, "VectorBucket",
                vector_bucket_name=self.vector_bucket_name,
                encryption_configuration=s3vectors.CfnVectorBucket.EncryptionConfigurationProperty(
                    sse_type="aws:kms", kms_key_arn=props.key.key_arn),
            )
            for index in s3_indexes:
                resource = s3vectors.CfnIndex(
                    self, f"{pascal(index.name)}Index",
                    vector_bucket_name=self.vector_bucket_name,
                    index_name=index.name,
                    data_type="float32",
                    dimension=index.dimension,
                    distance_metric=index.distance,
                    metadata_configuration=s3vectors.CfnIndex.MetadataConfigurationProperty(
                        non_filterable_metadata_keys=list(NON_FILTERABLE_KEYS)),
                )
                resource.node.add_dependency(self.vector_bucket)
                self.s3_indexes[index.name] = resource
        self.collections: dict[str, aoss.CfnCollection] = {}
        self._readers: list[iam.IRole] = []
        self._writers: list[iam.IRole] = []

    # --- names ----------------------------------------------------------------------------------
    def index_arn(self, index: SearchIndexConfig) -> str:
        stack = self._stack
        return (f"arn:{stack.partition}:s3vectors:{stack.region}:{stack.account}:bucket/"
                f"{self.vector_bucket_name}/index/{index.name}")

    @property
    def _deployment_role_arn(self) -> str:
        stack = self._stack
        return (f"arn:{stack.partition}:iam::{stack.account}:role/"
                f"cdk-hnb659fds-cfn-exec-role-{stack.account}-{stack.region}")

    def collection_name(self, index: SearchIndexConfig) -> str:
        return f"{self._props.name_prefix}-{index.name}"[:32].rstrip("-")

    # --- access ---------------------------------------------------------------------------------
    def grant(self, role: iam.IRole, index: SearchIndexConfig, *, write: bool) -> None:
        """Query (or with ``write``: read, put and delete) vectors of ``index``, with the key."""
        if index.store == "s3vectors":
            actions = list(WRITE_ACTIONS if write else READ_ACTIONS)
            role.add_to_principal_policy(iam.PolicyStatement(
                sid=f"{'Write' if write else 'Query'}{pascal(index.name)}Vectors",
                actions=actions, resources=[self.index_arn(index)]))
            self._props.key.grant(role, "kms:Decrypt", *(("kms:GenerateDataKey",) if write else ()))
        else:
            (self._writers if write else self._readers).append(role)
            role.add_to_principal_policy(iam.PolicyStatement(
                sid=f"Call{pascal(index.name)}Collection", actions=["aoss:APIAccessAll"],
                resources=[self.collections[index.name].attr_arn]))

    def open_search_collections(self, principals: tuple[iam.IRole, ...]) -> None:
        """Create the OpenSearch Serverless collections; their data-access policy names ``principals``
        (the roles that will index and search), nobody else."""
        for index in self._props.indexes:
            if index.store == "opensearch":
                self.collections[index.name] = self._collection(index, principals)

    def _collection(self, index: SearchIndexConfig, principals: tuple[iam.IRole, ...]) -> aoss.CfnCollection:
        props = self._props
        name = self.collection_name(index)
        prefix = pascal(index.name)
        rules = [{"ResourceType": "collection", "Resource": [f"collection/{name}"]}]
        encryption = aoss.CfnSecurityPolicy(
            self, f"{prefix}EncryptionPolicy", name=f"{name}-enc"[:32], type="encryption",
            policy=self._stack.to_json_string({"Rules": rules, "AWSOwnedKey": False, "KmsARN": props.key.key_arn}),
        )
        network = aoss.CfnSecurityPolicy(
            self, f"{prefix}NetworkPolicy", name=f"{name}-net"[:32], type="network",
            # Reached by the platform's Lambdas (outside the VPC) over TLS; every call is SigV4-signed
            # and checked against the data-access policy below.
            policy=json.dumps([{"Rules": rules, "AllowFromPublic": True}]),
        )
        access = aoss.CfnAccessPolicy(
            self, f"{prefix}DataAccessPolicy", name=f"{name}-data"[:32], type="data",
            policy=self._stack.to_json_string([{
                "Rules": [
                    {"ResourceType": "collection", "Resource": [f"collection/{name}"],
                     "Permission": ["aoss:DescribeCollectionItems"]},
                    {"ResourceType": "index", "Resource": [f"index/{name}/*"],
                     "Permission": ["aoss:CreateIndex", "aoss:DescribeIndex", "aoss:UpdateIndex",
                                    "aoss:ReadDocument", "aoss:WriteDocument"]},
                ],
                # CloudFormation creates the k-NN index below with the CDK deployment role.
                "Principal": [role.role_arn for role in principals] + [self._deployment_role_arn],
            }]),
        )
        collection = aoss.CfnCollection(
            self, f"{prefix}Collection", name=name, type="VECTORSEARCH",
            description=f"Semantic-search index {index.name}",
            standby_replicas="ENABLED" if props.production else "DISABLED",
        )
        collection.node.add_dependency(encryption)
        collection.node.add_dependency(network)
        collection.node.add_dependency(access)
        space = "cosinesimil" if index.distance == "cosine" else "l2"
        mapping = aoss.CfnIndex.PropertyMappingProperty
        knn_index = aoss.CfnIndex(
            self, f"{prefix}KnnIndex", collection_endpoint=collection.attr_collection_endpoint,
            index_name=index.name,
            settings=aoss.CfnIndex.IndexSettingsProperty(index=aoss.CfnIndex.IndexProperty(knn=True)),
            mappings=aoss.CfnIndex.MappingsProperty(properties={
                "vector": mapping(type="knn_vector", dimension=index.dimension, method=aoss.CfnIndex.MethodProperty(
                    name="hnsw", engine="faiss", space_type=space)),
                "text": mapping(type="text"),
                "doc_id": mapping(type="keyword"),
                "chunk": mapping(type="integer"),
                **{key: mapping(type="keyword") for key in index.filterable_metadata},
            }),
        )
        knn_index.node.add_dependency(collection)
        return collection
