"""The tests run against a real Vigil: `tests/api/python_client.rs` starts one, creates a
tenant and passes its URL and tokens in the environment. Missing is a failure, never a skip."""

import os
import uuid

import pytest

from vigil_client import VigilClient


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through `cargo test --test api python_client`")
    return value


@pytest.fixture
def vigil_url() -> str:
    return _required("VIGIL_URL")


@pytest.fixture
def tenant() -> str:
    return _required("VIGIL_TENANT")


@pytest.fixture
def ingest_token() -> str:
    return _required("VIGIL_INGEST_TOKEN")


@pytest.fixture
def ingest(vigil_url: str, ingest_token: str) -> VigilClient:
    return VigilClient(vigil_url, ingest_token, timeout=10)


@pytest.fixture
def admin(vigil_url: str) -> VigilClient:
    return VigilClient(vigil_url, _required("VIGIL_ADMIN_TOKEN"), timeout=10)


@pytest.fixture
def session_id() -> str:
    """A session of this test's own: its events are found by it."""
    return f"s-{uuid.uuid4().hex[:12]}"
