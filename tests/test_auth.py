"""Sign-in (issue 10, part 4): MONAI Label's OpenID Connect roles on a running server. A local HTTP
server stands in for the realm (Keycloak serves the same ``public_key`` document); tokens are signed
here with the matching private key."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import numpy as np
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import served_app, write_nifti
from lib.local_server import LocalServer

ROLES = {"user": ["monailabel-user"], "annotator": ["monailabel-user", "monailabel-annotator"],
         "admin": ["monailabel-user", "monailabel-annotator", "monailabel-admin"]}


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def realm():
    key = rsa_key()
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    document = json.dumps({"realm": "pemed", "public_key": base64.b64encode(der).decode()}).encode()

    class Realm(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/realms/pemed" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document if self.path == "/realms/pemed" else b"{}")

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Realm)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield {"uri": f"http://127.0.0.1:{httpd.server_port}/realms/pemed", "key": pem(key)}
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(realm, tmp_path_factory, tiny_checkpoint):
    import os

    root = tmp_path_factory.mktemp("auth")
    app = served_app(str(root / "app"), tiny_checkpoint)
    label = np.zeros((48, 40, 12), np.int16)
    label[10:30, 12:28, 3:9] = 77
    write_nifti(str(root / "studies" / "vol.nii.gz"), 50 + 100 * (label > 0))
    env = {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": realm["uri"]}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with LocalServer(app, str(root / "studies"), str(root / "server.log"),
                         conf={"pemed_auto_train": "false", "pemed_seg_poll_s": "0"}) as srv:
            yield {"url": srv.url, "label": label, "root": root}
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def token(realm, roles, key=None, expires_in=300, username="ann"):
    claims = {"preferred_username": username, "email": f"{username}@example.org", "name": username,
              "realm_access": {"roles": roles}, "exp": int(time.time()) + expires_in}
    return jwt.encode(claims, key or realm["key"], algorithm="RS256")


def get_info(server, bearer=None):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.get(f"{server['url']}/info/", headers=headers, timeout=30)


def test_requests_without_a_good_token_are_refused(server, realm):
    assert get_info(server).status_code == 401
    assert get_info(server, "not-a-token").status_code == 401
    assert get_info(server, token(realm, ROLES["admin"], key=pem(rsa_key()))).status_code == 401  # bad signature
    assert get_info(server, token(realm, ROLES["admin"], expires_in=-60)).status_code == 401  # expired
    unsigned = jwt.encode({"preferred_username": "x", "realm_access": {"roles": ROLES["admin"]},
                           "exp": int(time.time()) + 300}, "a-shared-secret-of-32-bytes-or-more", algorithm="HS256")
    assert get_info(server, unsigned).status_code == 401  # an HMAC token is never verified with the public key
    assert get_info(server, token(realm, ["someone-else"])).status_code == 403  # no role of the app's


def test_roles_decide_what_a_good_token_may_do(server, realm, tmp_path):
    user, annotator = token(realm, ROLES["user"]), token(realm, ROLES["annotator"], username="bob")
    assert get_info(server, user).status_code == 200
    click = {"foreground": [[20, 20, 5]], "reset_state": True}
    r = requests.post(f"{server['url']}/infer/pemed", params={"image": "vol", "output": "json"},
                      files={"params": (None, json.dumps(click))}, headers={"Authorization": f"Bearer {user}"},
                      timeout=120)
    assert r.status_code == 200, r.text

    path = tmp_path / "label.nii.gz"
    write_nifti(str(path), server["label"], np.int16)
    save = dict(params={"image": "vol"}, timeout=60)
    r = requests.put(f"{server['url']}/datastore/label", files={"label": ("l.nii.gz", path.read_bytes())},
                     headers={"Authorization": f"Bearer {user}"}, **save)
    assert r.status_code == 403  # a user may click, not save
    r = requests.put(f"{server['url']}/datastore/label", files={"label": ("l.nii.gz", path.read_bytes())},
                     headers={"Authorization": f"Bearer {annotator}"}, **save)
    assert r.status_code == 200, r.text
    r = requests.delete(f"{server['url']}/datastore/image", params={"id": "vol"},
                        headers={"Authorization": f"Bearer {annotator}"}, timeout=30)
    assert r.status_code == 403  # removing is the admin's
