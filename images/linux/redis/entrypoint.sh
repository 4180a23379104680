#!/bin/sh
# Entrypoint of localhost/chat/redis: runs redis-server in the foreground as
# user redis, persisting to the volume at /data (append-only file plus RDB
# snapshots).
#
#   REDIS_PORT          TCP port (default 6379)
#   REDIS_BIND_ADDRESS  address to listen on (default 0.0.0.0; 127.0.0.1 with a host network)
#   REDIS_PASSWORD      if set, clients must AUTH with it
#
# Extra arguments are passed to redis-server.
set -eu

mkdir -p /data
chown redis:redis /data
# Data written by an image whose redis user had another uid.
if [ -n "$(find /data -mindepth 1 ! -user redis -print -quit)" ]; then
    chown -R redis:redis /data
fi
set -- --port "${REDIS_PORT:-6379}" --bind "${REDIS_BIND_ADDRESS:-0.0.0.0}" \
    --dir /data --appendonly yes --appendfsync everysec --save "300 1 60 100" \
    --protected-mode no --daemonize no --logfile "" "$@"
if [ -n "${REDIS_PASSWORD:-}" ]; then
    set -- "$@" --requirepass "$REDIS_PASSWORD"
fi
echo "chat-redis-entrypoint: starting redis-server on ${REDIS_BIND_ADDRESS:-0.0.0.0}:${REDIS_PORT:-6379}" >&2
exec setpriv --reuid=redis --regid=redis --init-groups redis-server "$@"
