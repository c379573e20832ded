"""The Transaction API's app, built in-process as each gunicorn worker builds it."""

from __future__ import annotations

import warnings
from typing import Any

from loyalty_common.redis_access import make_redis
from transaction_api.app import create_app
from transaction_api.config import load_settings
from transaction_api.store import TransactionQueue


def test_creating_the_app_emits_no_deprecation_warning(jwt_keys: Any) -> None:
    settings = load_settings({"JWT_PUBLIC_KEY_FILE": str(jwt_keys.public_path)})
    store = TransactionQueue(make_redis(settings.redis), settings.idempotency_ttl)  # no I/O
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_app(settings, store)
    assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []
