#!/bin/sh
# Entrypoint of localhost/chat/mariadb: runs mariadbd in the foreground with
# its datadir on the volume at /var/lib/mysql. On the first start (empty
# volume) it initialises the datadir and creates the application database
# and user from the environment; later starts reuse the data as it is.
#
#   MARIADB_DATABASE        database to create (default chat)
#   MARIADB_USER            user to create, granted all on that database (default chat)
#   MARIADB_PASSWORD        its password (or MARIADB_PASSWORD_FILE); required on first start
#   MARIADB_PORT            TCP port (default 3306)
#   MARIADB_BIND_ADDRESS    address to listen on (default 0.0.0.0; 127.0.0.1 with a host network)
#
# root@localhost authenticates by unix socket only (no password exists):
#   ctr tasks exec --exec-id sql CONTAINER mariadb -e 'SELECT 1'
# Extra arguments are passed to mariadbd.
set -eu

DATADIR=/var/lib/mysql
DATABASE=${MARIADB_DATABASE:-chat}
USER_NAME=${MARIADB_USER:-chat}
PORT=${MARIADB_PORT:-3306}
BIND=${MARIADB_BIND_ADDRESS:-0.0.0.0}
INIT_SOCKET=/run/mysqld/init.sock

log() { echo "chat-mariadb-entrypoint: $*" >&2; }

# SQL string literal contents: double ' and \.
sql_escape() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g"; }

mkdir -p "$DATADIR" /run/mysqld
chown mysql:mysql "$DATADIR" /run/mysqld
# Data written by an image whose mysql user had another uid.
if [ -d "$DATADIR/mysql" ] && [ "$(stat -c %u "$DATADIR/mysql")" != "$(id -u mysql)" ]; then
    log "datadir owned by uid $(stat -c %u "$DATADIR/mysql"); handing it to mysql"
    chown -R mysql:mysql "$DATADIR"
fi

# A datadir left by an interrupted first start is initialised again.
if [ -f "$DATADIR/.chat-init-incomplete" ]; then
    log "a previous initialisation did not finish; starting it again"
    find "$DATADIR" -mindepth 1 -delete
fi

if [ ! -d "$DATADIR/mysql" ]; then
    if [ -z "${MARIADB_PASSWORD:-}" ] && [ -n "${MARIADB_PASSWORD_FILE:-}" ]; then
        MARIADB_PASSWORD=$(cat "$MARIADB_PASSWORD_FILE")
    fi
    if [ -z "${MARIADB_PASSWORD:-}" ]; then
        log "MARIADB_PASSWORD (or MARIADB_PASSWORD_FILE) is required to initialise an empty datadir"
        exit 1
    fi
    case $DATABASE in *[!A-Za-z0-9_]*)
        log "MARIADB_DATABASE may contain only letters, digits and _"
        exit 1 ;;
    esac
    log "initialising an empty datadir in $DATADIR"
    touch "$DATADIR/.chat-init-incomplete"
    mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
        --auth-root-authentication-method=socket --skip-name-resolve >/dev/null
    mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket="$INIT_SOCKET" &
    pid=$!
    tries=0
    until mariadb --socket="$INIT_SOCKET" -uroot -e 'SELECT 1' >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
            log "the initialising server did not come up"
            exit 1
        fi
        sleep 0.2
    done
    user=$(sql_escape "$USER_NAME")
    password=$(sql_escape "$MARIADB_PASSWORD")
    mariadb --socket="$INIT_SOCKET" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`$DATABASE\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$user'@'%' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON \`$DATABASE\`.* TO '$user'@'%';
FLUSH PRIVILEGES;
SHUTDOWN;
SQL
    wait "$pid" || true
    rm -f "$DATADIR/.chat-init-incomplete"
    log "database '$DATABASE' and user '$USER_NAME' created"
fi

log "starting mariadbd on $BIND:$PORT"
exec mariadbd --user=mysql --datadir="$DATADIR" --port="$PORT" --bind-address="$BIND" \
    --skip-name-resolve "$@"
