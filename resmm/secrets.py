"""Secrets never leave the process: values of credential-looking environment variables, credential-looking
keys and URL passwords are masked in everything resmm logs, tracks or writes (params, tags, artifacts,
the summary JSON, progress lines, error messages)."""
from __future__ import annotations

import os
import re
from typing import Any

MASK = "***"
# Environment variables (and config keys) whose values are credentials: AWS_SECRET_ACCESS_KEY,
# AWS_SESSION_TOKEN, AZURE_STORAGE_KEY, GOOGLE_APPLICATION_CREDENTIALS, RAY_AUTH_TOKEN,
# MLFLOW_TRACKING_PASSWORD, ... but not AWS_DEFAULT_REGION or AWS_ENDPOINT_URL.
# TOKENS (plural) counts text tokens (data.text.max_tokens): a setting, not a credential.
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN(?!S)|CREDENTIAL|PRIVATE|ACCESS_KEY|API_KEY|_KEY$|^KEY$",
                          re.IGNORECASE)
# Settings, not secrets, even when the name mentions one: RAY_AUTH_MODE=token must not mask the word "token".
_SETTING_SUFFIXES = ("_MODE", "_REGION", "_URL", "_URI", "_ENDPOINT", "_HOST", "_PORT", "_BUNDLE", "_PROFILE",
                     "_TYPE", "_ENABLED")
_CLOUD_PREFIXES = ("AWS_", "GOOGLE_", "GCP_", "GCS_", "AZURE_", "AZ_", "RAY_", "MLFLOW_")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)[^/@\s:]+(:[^/@\s]*)?@")
_MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not name.upper().endswith(_SETTING_SUFFIXES)


def secret_values(environ=None) -> list[str]:
    """Values of the credential-looking environment variables, longest first (so overlaps mask fully)."""
    environ = os.environ if environ is None else environ
    values = {
        value for name, value in environ.items()
        if looks_secret(name) and (name.upper().startswith(_CLOUD_PREFIXES) or "SECRET" in name.upper()
                                   or "PASSWORD" in name.upper() or "TOKEN" in name.upper())
        and len(value) >= _MIN_SECRET_CHARS
    }
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """The text with every secret value and every URL's user:password@ part masked."""
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, MASK)
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """A JSON-like tree with secret-looking keys' values and every secret inside strings masked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, dict):
        return {k: MASK if isinstance(k, str) and looks_secret(k) and v not in (None, "") else redact(v, secrets)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, secrets) for v in value)
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value
