"""Guards at the HTTP layer, in front of MONAI Label's routes.

- Names in a query (``image``, ``label``, ``id``, ``tag``, ``session_id``) must be datastore names
  (lib.datastore.NAME) before any route sees them: never a path (400).
- Request bodies are bounded, counted as they arrive, not only as declared (413).
- The routes that compute or write (infer, saving a label, adding an image) check that their
  ``params`` form field is a JSON object and run in Starlette's thread pool: MONAI Label runs them
  inside the event loop, where one long request held every other one, ``/info/`` included.
- Each click is keyed by its client (``client_of``), so users never continue each other's sessions.
- A label's kept versions are listed and restored: ``GET /datastore/label/versions?image=&tag=``,
  ``PUT /datastore/label/restore?image=&version=&tag=``.
"""

import json
from typing import Any, Dict, Optional
from urllib.parse import parse_qsl

from .datastore import check_name
from .errors import InvalidRequest

CHECKED_QUERY_NAMES = ("image", "label", "id", "tag", "session_id")


class RequestTooLarge(InvalidRequest):
    def __init__(self, limit: int):
        super().__init__(f"the request body is larger than this server takes ({limit // (1 << 20)} MB; "
                         f"--conf pemed_max_upload_mb)", 413)


class GuardMiddleware:
    """Pure ASGI: query names checked, bodies bounded. An error is answered before the route runs."""

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
                if key in CHECKED_QUERY_NAMES and value:
                    check_name(value, f"'{key}'")
            declared = dict(scope.get("headers") or []).get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
                raise RequestTooLarge(self.max_body_bytes)
        except InvalidRequest as e:
            return await reply(send, e.status, str(e))

        received, too_large, replaced = 0, False, False

        async def bounded_receive():
            nonlocal received, too_large
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                too_large = True
                raise RequestTooLarge(self.max_body_bytes)
            return message

        async def checked_send(message):
            """FastAPI answers any failure while it parses a form with its own 400: say 413 instead."""
            nonlocal replaced
            if message["type"] == "http.response.start" and too_large:
                replaced = True
                error = RequestTooLarge(self.max_body_bytes)
                return await reply(send, error.status, str(error))
            if not replaced:
                await send(message)

        await self.app(scope, bounded_receive, checked_send)


async def reply(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def json_object(text: Optional[str], name: str = "params") -> Dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except (json.JSONDecodeError, RecursionError) as e:
        raise InvalidRequest(f"'{name}' must be a JSON object: {e}") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{name}' must be a JSON object, got {type(value).__name__}")
    return value


def client_of(username: str, host: str, client_id: Any = None) -> str:
    """Who is clicking, as interaction sessions are keyed (lib/infers/pemed.py): the signed-in user
    (everyone is ``admin`` without authentication), the address the request came from, and the
    client's own ``client_id`` if it sends one."""
    if client_id is not None and not isinstance(client_id, (str, int)):
        raise InvalidRequest("'client_id' must be a string")
    return f"{username}@{host}" + (f"/{str(client_id)[:128]}" if client_id not in (None, "") else "")


def install(max_body_bytes: int) -> None:
    """Put the guards and the guarded routes on MONAI Label's FastAPI app (before its own routes)."""
    from typing import Optional as Opt

    from fastapi import BackgroundTasks, Depends, File, Form, Request, UploadFile
    from monailabel.app import app as api
    from monailabel.config import settings
    from monailabel.datastore.dicom import DICOMWebDatastore
    from monailabel.endpoints import datastore as ml_datastore
    from monailabel.endpoints import infer as ml_infer
    from monailabel.endpoints.user.auth import RBAC, User
    from monailabel.interfaces.datastore import DefaultLabelTag
    from monailabel.interfaces.utils.app import app_instance
    from starlette.concurrency import run_in_threadpool

    user_role = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))
    annotator_role = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))

    async def infer(request: Request, background_tasks: BackgroundTasks, model: str, image: str = "",
                    session_id: str = "", params: str = Form("{}"), file: UploadFile = File(None),
                    label: UploadFile = File(None), output: Opt[ml_infer.ResultType] = None, user: User = user_role):
        p = json_object(params)
        if {"image", "model", "client"} & set(p):
            raise InvalidRequest("'image' and 'model' go in the URL, and 'client' is the server's to set")
        p["client"] = client_of(user.username, request.client.host if request.client else "", p.get("client_id"))
        params = json.dumps(p)
        if not (file or image or session_id):
            raise InvalidRequest("send an image id ('image'), an image file ('file') or a 'session_id'")
        if output == ml_infer.ResultType.dicom_seg and not isinstance(app_instance().datastore(), DICOMWebDatastore):
            raise InvalidRequest("output=dicom_seg needs a DICOMweb study list")
        return await run_in_threadpool(ml_infer.run_inference, background_tasks, model, image, session_id, params,
                                       file, label, output)

    async def save_label(background_tasks: BackgroundTasks, image: str, params: str = Form("{}"),
                         tag: str = DefaultLabelTag.FINAL.value, label: UploadFile = File(...),
                         user: User = annotator_role):
        json_object(params)
        return await run_in_threadpool(ml_datastore.save_label, background_tasks, image, params, tag, label,
                                       user.username)

    async def add_image(background_tasks: BackgroundTasks, image: Opt[str] = None, params: str = Form("{}"),
                        file: UploadFile = File(...), user: User = annotator_role):
        json_object(params)
        return await run_in_threadpool(ml_datastore.add_image, background_tasks, image, params, file, user.username)

    def label_versions(image: str, tag: str = DefaultLabelTag.FINAL.value, user: User = user_role):
        store = app_instance().datastore()
        store.known_image(image)
        return {"image": image, "tag": tag, "versions": store.label_versions(image, tag)}

    def restore_label(image: str, version: str, tag: str = DefaultLabelTag.FINAL.value, user: User = annotator_role):
        instance = app_instance()
        label_id = instance.datastore().restore_label(image, version, tag)
        if tag == DefaultLabelTag.FINAL.value:
            instance.on_save_label(image, label_id)
        return {"image": image, "label": label_id, "tag": tag, "restored": version}

    routes = [("/infer/{model}", infer, "POST"), ("/datastore/label", save_label, "PUT"),
              ("/datastore/image", add_image, "PUT"), ("/datastore/label/versions", label_versions, "GET"),
              ("/datastore/label/restore", restore_label, "PUT")]
    for path, endpoint, method in routes:
        api.add_api_route(path, endpoint, methods=[method], tags=["PE-MED guards"])
        api.router.routes.insert(0, api.router.routes.pop())  # matched before MONAI Label's own
    api.add_middleware(GuardMiddleware, max_body_bytes=max_body_bytes)
    api.middleware_stack = None  # rebuilt on the next request (see main.install_error_handlers)
