"""The Redis client settings of a loyalty service, as an Ansible filter.

``redis_client_settings`` turns a service role's Redis variables into what
the service reads (docs/interfaces.md): the environment variables
``REDIS_URL`` (``rediss://`` with TLS), ``REDIS_PASSWORD_FILE``,
``REDIS_SOCKET_TIMEOUT``, with TLS ``REDIS_TLS_CA_FILE``,
``REDIS_TLS_CERT_FILE`` and ``REDIS_TLS_KEY_FILE``, and,
with Sentinels, ``REDIS_SENTINELS``, ``REDIS_SENTINEL_MASTER`` and
``REDIS_SENTINEL_PASSWORD_FILE``; and the password files to copy into the
service's configuration directory. It is a pure function of its arguments:
the role resolves the inventory (the Redis group's first address, the
Sentinel group's addresses) and checks the inputs before calling it.

Ansible finds it beside the playbooks (playbooks/filter_plugins, the
directory Ansible searches next to each playbook it loads) and through
ansible.cfg's filter_plugins. Tests: tests/plugins/.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any, TypedDict

# Mode of the copied password files: root and the service's group may read.
PASSWORD_FILE_MODE = "0640"


class ConfigFile(TypedDict):
    """A file for python_service_config_files: copied from the control node."""

    dest: str
    src: str
    mode: str


class RedisClientSettings(TypedDict):
    """What a service role hands to python_service, and the Sentinels used."""

    environment: dict[str, str]
    config_files: list[ConfigFile]
    sentinels: list[str]


def bracketed(address: str) -> str:
    """An IPv6 address in brackets (as in a URL or host:port); others as given."""
    return f"[{address}]" if ":" in address else address


def sentinel_addresses(
    sentinels: Sequence[str], group_addresses: Sequence[str], port: int | str
) -> list[str]:
    """The Sentinels given as host:port, or else every address of the
    Sentinel group with the Sentinels' port."""
    if sentinels:
        return list(sentinels)
    return [f"{bracketed(address)}:{port}" for address in group_addresses]


def redis_client_settings(
    host: str,
    *,
    port: int | str,
    db: int | str,
    user: str,
    socket_timeout: float | str,
    password_src: str,
    password_file: str,
    sentinels: Sequence[str],
    sentinel_group_addresses: Sequence[str],
    sentinel_port: int | str,
    sentinel_master: str,
    sentinel_password_src: str,
    sentinel_password_file: str,
    tls: bool = True,
    tls_ca_file: str = "",
    tls_cert_file: str = "",
    tls_key_file: str = "",
) -> RedisClientSettings:
    """The environment and password files of a Redis client.

    ``host`` is the Redis address without brackets. ``sentinels`` are
    host:port strings as given (an IPv6 host in brackets); when empty, the
    Sentinels are ``sentinel_group_addresses`` with ``sentinel_port``, and
    when those are empty too the service connects to ``host`` itself. The
    password is never in ``REDIS_URL``: the service reads it from
    ``password_file``, a copy of ``password_src``. With ``tls``, the URL is
    ``rediss://`` (for the Sentinels too) and the ``tls_*`` host paths (the
    service's copies of its certificate, key and CA) are named; the files
    themselves are the service role's to install.
    """
    scheme = "rediss" if tls else "redis"
    environment = {
        "REDIS_URL": f"{scheme}://{user}@{bracketed(host)}:{port}/{db}",
        "REDIS_PASSWORD_FILE": password_file,
        "REDIS_SOCKET_TIMEOUT": str(socket_timeout),
    }
    if tls:
        tls_files = {
            "REDIS_TLS_CA_FILE": tls_ca_file,
            "REDIS_TLS_CERT_FILE": tls_cert_file,
            "REDIS_TLS_KEY_FILE": tls_key_file,
        }
        environment |= {name: path for name, path in tls_files.items() if path}
    config_files = [
        ConfigFile(
            dest=PurePosixPath(password_file).name, src=password_src, mode=PASSWORD_FILE_MODE
        )
    ]
    resolved = sentinel_addresses(sentinels, sentinel_group_addresses, sentinel_port)
    if resolved:
        environment |= {
            "REDIS_SENTINELS": ",".join(resolved),
            "REDIS_SENTINEL_MASTER": sentinel_master,
            "REDIS_SENTINEL_PASSWORD_FILE": sentinel_password_file,
        }
        config_files.append(
            ConfigFile(
                dest=PurePosixPath(sentinel_password_file).name,
                src=sentinel_password_src,
                mode=PASSWORD_FILE_MODE,
            )
        )
    return RedisClientSettings(
        environment=environment, config_files=config_files, sentinels=resolved
    )


class FilterModule:
    """Ansible's entry point for the filters of this file."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"redis_client_settings": redis_client_settings}
