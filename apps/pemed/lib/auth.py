"""MONAI Label's OpenID Connect sign-in, made to accept good tokens.

With ``MONAI_LABEL_AUTH_ENABLE=true`` every request carries a bearer token signed by the realm
(Keycloak, say) whose public key MONAI Label fetches from ``MONAI_LABEL_AUTH_REALM_URI``; its roles
(``MONAI_LABEL_AUTH_TOKEN_ROLES``, ``realm_access#roles``) decide what the user may do (user: view and
click, annotator: save labels and train, admin: remove). MONAI Label 0.8.5 decodes the token without
naming the signature algorithms, which PyJWT 2 refuses: every token, good or not, was a 401.
``from_token`` here names them (asymmetric ones only: a realm's public key must never verify an HMAC
token made with it as the secret) and is put in MONAI Label's place.
"""

import jwt
import requests
from fastapi import HTTPException

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


def from_token(token: str):
    from monailabel.config import settings
    from monailabel.endpoints.user import auth

    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return auth.DEFAULT_USER
    try:
        key = auth.get_public_key(settings.MONAI_LABEL_AUTH_REALM_URI)
    except (requests.RequestException, ValueError, KeyError) as e:
        raise HTTPException(503, f"the sign-in realm cannot be reached or read ({type(e).__name__})") from None
    payload = jwt.decode(token, key, algorithms=ALGORITHMS,
                         options={"verify_signature": True, "verify_aud": False, "verify_exp": True,
                                  "require": ["exp"]})
    roles = payload
    for part in settings.MONAI_LABEL_AUTH_TOKEN_ROLES.split("#"):
        roles = roles.get(part) if isinstance(roles, dict) else None
    return auth.User(username=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME) or "",
                     email=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL),
                     name=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
                     roles=[r for r in roles if isinstance(r, str)] if isinstance(roles, list) else [])


def install() -> None:
    from monailabel.endpoints.user import auth

    auth.from_token = from_token  # get_current_user looks it up at each request
