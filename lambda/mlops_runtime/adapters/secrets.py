"""Secrets the functions read at cold start, through Powertools parameters (cached in memory).

The subject-hash key is the HMAC key of stored subject hashes: the stack passes the secret's ARN in
the function's settings and grants ``secretsmanager:GetSecretValue`` on it, so the key itself is in
no template and no function configuration.
"""

from __future__ import annotations

from typing import Any

SECRET_MAX_AGE_SECONDS = 3600  # never rotated (see ApiStack._subject_hash_key): one read per hour at most


def subject_hash_key(secret_id: str, client: Any | None = None) -> bytes:
    """``client``: a Secrets Manager client of one's own (the local rehearsal's moto); by default
    Powertools' shared provider and its cache."""
    from aws_lambda_powertools.utilities import parameters  # imports boto3: on first use, not at import

    if client is None:
        value = parameters.get_secret(secret_id, max_age=SECRET_MAX_AGE_SECONDS)
    else:
        value = parameters.SecretsProvider(boto3_client=client).get(secret_id, max_age=SECRET_MAX_AGE_SECONDS)
    return str(value).encode("utf-8")
