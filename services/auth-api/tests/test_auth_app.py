"""The Auth API's app, built in-process as each gunicorn worker builds it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from auth_api.app import create_app
from auth_api.config import load_settings


def test_creating_the_app_emits_no_deprecation_warning(jwt_keys: Any, users_file: Path) -> None:
    settings = load_settings(
        {"JWT_PRIVATE_KEY_FILE": str(jwt_keys.private_path), "USERS_FILE": str(users_file)}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_app(settings)
    assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []


def test_importing_the_app_does_not_import_redis(packages_imported_by) -> None:
    assert packages_imported_by("auth_api.app, auth_api.server", ("redis",)) == []
