"""Schemathesis hooks for tests/api/schemathesis.rs: how to send a TOML body (a tenant's policy,
`PUT /v1/tenants/{id}/policy`), which schemathesis has no serializer for; and the lambdas of
schemathesis' JSON Schema strategies parsed once here, at the top of the stack."""

import ast
import inspect

import schemathesis
from hypothesis.internal import lambda_sources
from schemathesis.generation.jsonschema import strategy


@schemathesis.serializer("application/toml")
def toml(ctx, value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


# Hypothesis describes a strategy's lambdas by parsing their whole source file, and does so when
# it validates a recursive strategy (a free-form object such as an event's `params`), deep in a
# draw. There, CPython 3.11.7's `ast.parse` can fail with "SystemError: AST constructor recursion
# depth mismatch" (seen with two workers), which Hypothesis reports as a FlakyFailure of
# `POST /v1/events`. Its cache of parsed files is per thread; one shared by every worker, holding
# this file parsed here at the top of the stack, leaves no parse to happen there.
_lines, _ = inspect.findsource(strategy)
lambda_sources.AST_LAMBDAS_CACHE = {tuple(_lines): lambda_sources.extract_all_lambdas(ast.parse("".join(_lines)))}
