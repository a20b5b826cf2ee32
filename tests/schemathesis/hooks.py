"""Schemathesis hooks for tests/api/schemathesis.rs: how to send a TOML body (a tenant's policy,
`PUT /v1/tenants/{id}/policy`), which schemathesis has no serializer for."""

import schemathesis


@schemathesis.serializer("application/toml")
def toml(ctx, value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
