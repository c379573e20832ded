"""redis_client_settings (playbooks/filter_plugins/redis_client.py): the Redis
part of a service's environment and the password files it reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

PASSWORD_SRC = "/control/.secrets/redis/loyalty.password"
SENTINEL_PASSWORD_SRC = "/control/.secrets/redis/sentinel.password"

# A service role's defaults, as transaction_api hands them to the filter.
DEFAULTS: dict[str, Any] = {
    "port": 6379,
    "db": 0,
    "user": "loyalty",
    "socket_timeout": 2.0,
    "password_src": PASSWORD_SRC,
    "password_file": "/etc/transaction-api/redis.password",
    "sentinels": [],
    "sentinel_group_addresses": [],
    "sentinel_port": 26379,
    "sentinel_master": "loyalty",
    "sentinel_password_src": SENTINEL_PASSWORD_SRC,
    "sentinel_password_file": "/etc/transaction-api/sentinel.password",
    # Plain here, so that the tests below see the URL's shape alone; the
    # TLS tests at the end turn it on as the roles do.
    "tls": False,
}
TLS = {
    "tls": True,
    "tls_ca_file": "/etc/transaction-api/tls-ca.pem",
    "tls_cert_file": "/etc/transaction-api/tls-certificate.pem",
    "tls_key_file": "/etc/transaction-api/tls-private-key.pem",
}

PLAIN_FILES = [
    {"dest": "redis.password", "src": PASSWORD_SRC, "mode": "0640"},
]
SENTINEL_FILES = [
    *PLAIN_FILES,
    {"dest": "sentinel.password", "src": SENTINEL_PASSWORD_SRC, "mode": "0640"},
]


@pytest.fixture
def settings(load_filter: Callable[[str], Callable[..., Any]]) -> Callable[..., Any]:
    """The filter with the defaults above, overridden by keyword."""
    redis_client_settings = load_filter("redis_client_settings")

    def call(host: str, **overrides: Any) -> Any:
        return redis_client_settings(host, **(DEFAULTS | overrides))

    return call


def test_ipv4_host_without_sentinels(settings):
    result = settings("172.30.6.11")
    assert result["environment"] == {
        "REDIS_URL": "redis://loyalty@172.30.6.11:6379/0",
        "REDIS_PASSWORD_FILE": "/etc/transaction-api/redis.password",
        "REDIS_SOCKET_TIMEOUT": "2.0",
    }
    assert result["config_files"] == PLAIN_FILES
    assert result["sentinels"] == []


def test_ipv6_host_is_bracketed_in_the_url(settings):
    result = settings("fd00:30::11", port=6380, db=2, user="worker")
    assert result["environment"]["REDIS_URL"] == "redis://worker@[fd00:30::11]:6380/2"


def test_host_name_stays_as_it_is(settings):
    result = settings("redis.internal")
    assert result["environment"]["REDIS_URL"] == "redis://loyalty@redis.internal:6379/0"


def test_no_password_in_the_url(settings):
    assert "password" not in settings("10.0.0.1")["environment"]["REDIS_URL"]


def test_sentinels_given_are_used_as_given(settings):
    given = ["10.0.0.1:26379", "[fd00::2]:26380"]
    result = settings(
        "10.0.0.5",
        sentinels=given,
        # The group is not used when Sentinels are given.
        sentinel_group_addresses=["10.9.9.9"],
    )
    assert result["sentinels"] == given
    assert result["environment"] == {
        "REDIS_URL": "redis://loyalty@10.0.0.5:6379/0",
        "REDIS_PASSWORD_FILE": "/etc/transaction-api/redis.password",
        "REDIS_SOCKET_TIMEOUT": "2.0",
        "REDIS_SENTINELS": "10.0.0.1:26379,[fd00::2]:26380",
        "REDIS_SENTINEL_MASTER": "loyalty",
        "REDIS_SENTINEL_PASSWORD_FILE": "/etc/transaction-api/sentinel.password",
    }
    assert result["config_files"] == SENTINEL_FILES


def test_sentinels_from_the_group_get_the_port_and_ipv6_brackets(settings):
    result = settings(
        "172.30.11.21",
        sentinel_group_addresses=["172.30.11.21", "fd00:11::22", "172.30.11.23"],
        sentinel_port=26400,
        sentinel_master="primary",
    )
    assert result["sentinels"] == [
        "172.30.11.21:26400",
        "[fd00:11::22]:26400",
        "172.30.11.23:26400",
    ]
    assert result["environment"]["REDIS_SENTINELS"] == (
        "172.30.11.21:26400,[fd00:11::22]:26400,172.30.11.23:26400"
    )
    assert result["environment"]["REDIS_SENTINEL_MASTER"] == "primary"
    assert result["config_files"] == SENTINEL_FILES


def test_no_sentinels_anywhere_means_no_sentinel_variables_or_file(settings):
    result = settings("10.0.0.5", sentinels=[], sentinel_group_addresses=[])
    assert not any(name.startswith("REDIS_SENTINEL") for name in result["environment"])
    assert result["config_files"] == PLAIN_FILES


def test_values_from_the_inventory_as_strings_give_the_same_environment(settings):
    as_numbers = settings("10.0.0.5")
    as_strings = settings("10.0.0.5", port="6379", db="0", socket_timeout="2.0")
    assert as_strings == as_numbers


def test_password_files_keep_their_names_in_the_configuration_directory(settings):
    result = settings(
        "10.0.0.5",
        password_file="/etc/loyalty-worker/loyalty.pw",
        sentinels=["10.0.0.1:26379"],
        sentinel_password_file="/etc/loyalty-worker/s.pw",
    )
    assert [f["dest"] for f in result["config_files"]] == ["loyalty.pw", "s.pw"]


def test_every_argument_but_the_host_is_named(load_filter):
    redis_client_settings = load_filter("redis_client_settings")
    with pytest.raises(TypeError):
        redis_client_settings("10.0.0.5", *DEFAULTS.values())


def test_templated_by_ansible_with_keyword_arguments(render):
    expression = (
        "{{ redis_host | redis_client_settings(port=port, db=0, user='loyalty',"
        " socket_timeout=timeout, password_src=src, password_file='/etc/x/redis.password',"
        " sentinels=[], sentinel_group_addresses=groups['redis_sentinel'] | default([]),"
        " sentinel_port=26379, sentinel_master='loyalty', sentinel_password_src=src,"
        " sentinel_password_file='/etc/x/sentinel.password') }}"
    )
    variables = {
        "redis_host": "fd00::11",
        "port": 6379,
        "timeout": 2.0,
        "src": PASSWORD_SRC,
        "groups": {"redis_sentinel": ["fd00::21"]},
    }
    result = render(expression, variables)
    # TLS unless told otherwise.
    assert result["environment"]["REDIS_URL"] == "rediss://loyalty@[fd00::11]:6379/0"
    assert result["environment"]["REDIS_SENTINELS"] == "[fd00::21]:26379"
    assert result["environment"]["REDIS_SOCKET_TIMEOUT"] == "2.0"


def test_tls_gives_a_rediss_url_and_the_files_to_verify_and_present(settings):
    environment = settings("172.30.6.11", **TLS)["environment"]
    assert environment["REDIS_URL"] == "rediss://loyalty@172.30.6.11:6379/0"
    assert environment["REDIS_TLS_CA_FILE"] == TLS["tls_ca_file"]
    assert environment["REDIS_TLS_CERT_FILE"] == TLS["tls_cert_file"]
    assert environment["REDIS_TLS_KEY_FILE"] == TLS["tls_key_file"]


def test_tls_holds_for_the_sentinels_too(settings):
    result = settings("172.30.6.11", sentinel_group_addresses=["172.30.6.11"], **TLS)
    assert result["environment"]["REDIS_URL"].startswith("rediss://")
    assert result["environment"]["REDIS_SENTINELS"] == "172.30.6.11:26379"


def test_without_tls_no_tls_variable_is_set(settings):
    environment = settings("172.30.6.11", **(TLS | {"tls": False}))["environment"]
    assert environment["REDIS_URL"].startswith("redis://")
    assert not [name for name in environment if name.startswith("REDIS_TLS_")]
