"""Fixtures of the SDK tests: the Node SDK installed once per machine, and an HTTPS server (the Node SDK
sends its API secret, hence `import`, only over HTTPS) whose throwaway CA the SDK is told to trust."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from node_support import HttpsServer, install_node_sdk, node_tools_missing

from support import LiveServer, make_settings


@pytest.fixture(scope="session")
def node_sdk() -> Path:
    """A directory with `node_modules/mixpanel` at the pinned version (cached outside the repository)."""
    missing = node_tools_missing()
    if missing:
        pytest.skip(missing)
    return install_node_sdk()


@pytest.fixture(scope="session")
def https_server(database_url: str) -> Iterator[HttpsServer]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    with tempfile.TemporaryDirectory(prefix="profilestore-tls-") as tmp:
        certfile, keyfile, ca_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem"), Path(tmp, "ca.pem")
        cert.cert_chain_pems[0].write_to_path(str(certfile))
        cert.private_key_pem.write_to_path(str(keyfile))
        ca.cert_pem.write_to_path(str(ca_file))
        live = LiveServer(database_url, make_settings(), ssl_certfile=str(certfile), ssl_keyfile=str(keyfile))
        with live:
            yield HttpsServer(live, ca_file)
