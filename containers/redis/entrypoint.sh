#!/bin/sh
# Write the ACL file from the two password files (only their SHA-256 digests
# are written), then run redis-server in the foreground. Extra arguments are
# passed on to redis-server as configuration (e.g. --maxmemory 512mb).
set -eu

acl=/tmp/users.acl
first_line() {
    [ -s "$1" ] || { echo "loyalty-redis: password file $1 is missing or empty" >&2; exit 2; }
    head -n 1 "$1" | tr -d '\r\n'
}
digest() { printf '%s' "$1" | sha256sum | cut -d ' ' -f 1; }

admin="$(digest "$(first_line "$REDIS_ADMIN_PASSWORD_FILE")")"
service="$(digest "$(first_line "$REDIS_SERVICE_PASSWORD_FILE")")"

umask 077
# `default`: administration and health checks. The service user: the
# platform's keys and the commands the services need, as on the hosts
# (roles/redis/vars/main.yml).
cat >"$acl.tmp" <<ACL
user default on #$admin ~* &* +@all
user $REDIS_SERVICE_USER on #$service ~loyalty:* -@all +@connection +@read +@write +@keyspace +@string +@hash +@list +@set +@sortedset +@stream +@scripting +@transaction -@admin -@dangerous +select +info -script|flush -scan -randomkey
ACL
mv "$acl.tmp" "$acl"

exec redis-server /etc/loyalty-redis/redis.conf --aclfile "$acl" "$@"
