"""`serve --ssl-certfile F --ssl-keyfile F` serves HTTPS: the Node SDK sends an API secret only so."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from support import free_port


@pytest.mark.slow
def test_serve_https(database_url: str, project: dict[str, Any]) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    with tempfile.TemporaryDirectory() as tmp:
        certfile, keyfile, cafile = Path(tmp, "cert.pem"), Path(tmp, "key.pem"), Path(tmp, "ca.pem")
        cert.cert_chain_pems[0].write_to_path(str(certfile))
        cert.private_key_pem.write_to_path(str(keyfile))
        ca.cert_pem.write_to_path(str(cafile))
        port = free_port()
        env = {**os.environ, "DATABASE_URL": database_url}
        args = ["serve", "--port", str(port), "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "profilestore", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            tls = ssl.create_default_context(cafile=str(cafile))
            with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=tls, timeout=10) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline and proc.poll() is None, "serve did not come up"
                        time.sleep(0.2)
                record = {"$token": project["token"], "$distinct_id": "tls", "$set": {"a": 1}}
                assert client.post("/engage", json=[record]).text == "1"
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)  # plain HTTP is not spoken
        finally:
            proc.terminate()
            proc.wait(30)
