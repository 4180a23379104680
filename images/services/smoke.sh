#!/usr/bin/env bash
# Smoke test of a running chat stack, through the gateway or any service.
#
#   images/services/smoke.sh BASE_URL            e.g. http://127.0.0.1:3000
#   SMOKE_TRUNCATE=1 images/services/smoke.sh …  also runs the truncator
#                                                (empties the database!)
#
# Exercises every documented status code of every route with curl and checks
# the JSON bodies where it matters. Prints one line per check, then
# "N passed, M failed"; exits 1 if any check failed. Needs bash, curl, grep.
# Without SMOKE_TRUNCATE the truncator is only probed with POST (405 when it
# is routed, 404 when not): an enabled truncator needs no session, so a GET
# would empty the database. It never empties the database unless asked.
set -uo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 BASE_URL" >&2
    exit 2
fi
base="${1%/}"
passed=0
failed=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

STATUS=""
BODY=""
CTYPE=""

# request METHOD PATH [SESSION_ID] [JSON_BODY]: sets STATUS, BODY, CTYPE.
request() {
    local method=$1 path=$2 session=${3:-} body=${4-}
    local args=(-sS --path-as-is -X "$method" -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 10)
    [ -n "$session" ] && args+=(-H "Session-Id: $session")
    if [ -n "$body" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    STATUS="$(curl "${args[@]}" "$base$path" 2>"$tmp/err")" || STATUS="curl-failed($(cat "$tmp/err"))"
    BODY="$(cat "$tmp/body" 2>/dev/null)"
    CTYPE="$(grep -i '^content-type:' "$tmp/headers" 2>/dev/null | head -n1 | cut -d' ' -f2- | tr -d '\r')"
}

pass() {
    passed=$((passed + 1))
    echo "PASS $1"
}

fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
}

# check NAME EXPECTED METHOD PATH [SESSION] [BODY]: one request, one verdict.
# API answers must be JSON; errors must be {"error":"…"}.
check() {
    local name=$1 expected=$2
    shift 2
    request "$@"
    if [ "$STATUS" != "$expected" ]; then
        fail "$name: expected $expected, got $STATUS: $BODY"
        return 1
    fi
    if [[ "$2" == /api* ]]; then
        if [ "$CTYPE" != "application/json" ]; then
            fail "$name: Content-Type is '$CTYPE', not application/json"
            return 1
        fi
        if [ "${expected:0:1}" != 2 ] && ! [[ "$BODY" =~ ^\{\"error\":\".*\"\}$ ]]; then
            fail "$name: error body is not {\"error\":…}: $BODY"
            return 1
        fi
    fi
    pass "$name ($STATUS)"
}

# expect NAME PATTERN: the last body matches the (extended) regex.
expect() {
    if [[ "$BODY" =~ $2 ]]; then pass "$1"; else fail "$1: body does not match /$2/: $BODY"; fi
}

refuse() {
    if [[ "$BODY" =~ $2 ]]; then fail "$1: body matches /$2/: $BODY"; else pass "$1"; fi
}

# Field extraction from compact JSON (first occurrence).
json_str() { grep -o "\"$1\":\"[^\"]*\"" <<<"$BODY" | head -n1 | cut -d'"' -f4; }
json_num() { grep -o "\"$1\":[0-9]*" <<<"$BODY" | head -n1 | cut -d: -f2; }

bogus_session=01ARZ3NDEKTSV4RRFFQ69G5FAV

echo "== sessions"
check "create session" 201 GET /api/sessions
expect "session JSON is compact, in documented order" \
    '^\{"session_id":"[0-7][0-9A-HJKMNP-TV-Z]{25}","name":"[^"]+","emoji":"[^"]+","expires_at":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z","created_at":"[^"]+"\}$'
alice="$(json_str session_id)"
check "create second session" 201 GET /api/sessions
bob="$(json_str session_id)"
check "sessions: wrong method" 405 POST /api/sessions

echo "== authentication"
check "no Session-Id header" 401 GET /api/chats
check "malformed Session-Id" 401 GET /api/chats "not-a-session"
check "unknown Session-Id" 401 GET /api/chats "$bogus_session"
check "messages need a session" 401 GET "/api/messages?chat_id=1"
check "users need a session" 401 GET /api/users

echo "== chats"
check "list chats" 200 GET /api/chats "$alice"
expect "list is a JSON array" '^\['
check "create chat" 201 POST /api/chats "$alice" '{"name":"Smoke test","description":"created by smoke.sh"}'
expect "created chat is owned by the caller" '"is_owner":true'
refuse "chat JSON carries no session id" 'session'
chat="$(json_num id)"
check "create chat without name" 400 POST /api/chats "$alice" '{"description":"no name"}'
check "create chat with malformed JSON" 400 POST /api/chats "$alice" '{"name":'
check "create chat with wrong type" 400 POST /api/chats "$alice" '{"name":42}'
check "get chat" 200 GET "/api/chats/$chat" "$alice"
expect "get returns the chat" "\"id\":$chat,\"name\":\"Smoke test\""
check "get chat as someone else" 200 GET "/api/chats/$chat" "$bob"
expect "not owner flag for others" '"is_owner":false'
check "get missing chat" 404 GET /api/chats/999999999 "$alice"
check "get chat with invalid id" 400 GET /api/chats/abc "$alice"
check "update chat" 200 PUT /api/chats/ "$alice" "{\"id\":$chat,\"name\":\"Smoke test renamed\"}"
expect "update applied" '"name":"Smoke test renamed"'
check "update that changes nothing" 400 PUT /api/chats/ "$alice" "{\"id\":$chat,\"name\":\"Smoke test renamed\"}"
check "update with no fields" 400 PUT /api/chats/ "$alice" "{\"id\":$chat}"
check "update without id" 400 PUT /api/chats/ "$alice" '{"name":"x"}'
check "update by non-owner" 401 PUT /api/chats/ "$bob" "{\"id\":$chat,\"name\":\"hijacked\"}"
check "delete by non-owner" 401 DELETE "/api/chats/$chat" "$bob"
check "delete missing chat" 401 DELETE /api/chats/999999999 "$alice"
check "chats: wrong method" 405 PATCH /api/chats "$alice"
check "chats: unknown route" 404 GET "/api/chats/$chat/extra" "$alice"

echo "== messages"
check "post message" 201 POST /api/messages "$alice" "{\"chat_id\":$chat,\"text\":\"hello from smoke\"}"
expect "message has sender name and emoji" '"sender_name":"[^"]+","sender_emoji":"[^"]+","is_mine":true'
m1="$(json_num id)"
check "post second message" 201 POST /api/messages "$bob" "{\"chat_id\":$chat,\"text\":\"hi back\"}"
m2="$(json_num id)"
check "post without text" 400 POST /api/messages "$alice" "{\"chat_id\":$chat}"
check "post without chat_id" 400 POST /api/messages "$alice" '{"text":"orphan"}'
check "post with wrong type" 400 POST /api/messages "$alice" "{\"chat_id\":\"$chat\",\"text\":\"x\"}"
check "post to missing chat" 404 POST /api/messages "$alice" '{"chat_id":999999999,"text":"x"}'
check "list messages" 200 GET "/api/messages?chat_id=$chat" "$alice"
expect "list has both messages in order" "\"id\":$m1,.*\"id\":$m2,"
expect "list carries sender emoji" '"sender_emoji":"[^"]+"'
check "list messages after first" 200 GET "/api/messages?chat_id=$chat&fetch_from_message_id=$m1" "$alice"
expect "only newer messages" "^\[\{\"id\":$m2,[^]]*\}\]$"
check "list messages after last" 200 GET "/api/messages?chat_id=$chat&fetch_from_message_id=$m2" "$alice"
expect "nothing newer" '^\[\]$'
check "list without chat_id" 400 GET /api/messages "$alice"
check "list with bad fetch_from_message_id" 400 GET "/api/messages?chat_id=$chat&fetch_from_message_id=x" "$alice"
check "edit message" 200 PUT /api/messages/ "$alice" "{\"id\":$m1,\"text\":\"edited by smoke\"}"
expect "edit applied" '"text":"edited by smoke"'
check "edit without id" 400 PUT /api/messages/ "$alice" '{"text":"x"}'
check "edit without text" 400 PUT /api/messages/ "$alice" "{\"id\":$m1}"
check "edit by non-sender" 401 PUT /api/messages/ "$bob" "{\"id\":$m1,\"text\":\"hijacked\"}"
check "delete by non-sender" 401 DELETE "/api/messages/$m1" "$bob"
check "delete missing message" 401 DELETE /api/messages/999999999 "$alice"
check "delete message" 200 DELETE "/api/messages/$m1" "$alice"
check "delete it again" 401 DELETE "/api/messages/$m1" "$alice"
check "messages: wrong method" 405 PATCH /api/messages "$alice"

echo "== oversized and odd requests"
big="{\"chat_id\":$chat,\"text\":\"$(head -c 70000 /dev/zero | tr '\0' 'a')\"}"
check "body over 64 KiB" 413 POST /api/messages "$alice" "$big"
check "unknown API" 404 GET /api/nothing-here "$alice"

echo "== users"
check "mark online" 200 POST /api/users "$alice"
check "refresh online" 200 PUT /api/users "$alice"
check "mark second user online" 200 POST /api/users "$bob"
check "list online users" 200 GET /api/users "$alice"
expect "caller is listed" '"is_me":true'
expect "other user is listed" '"is_me":false'
refuse "user list carries no session id" "$bob"
check "users: wrong method" 405 DELETE /api/users "$alice"

echo "== deleting a chat deletes its messages"
check "delete chat" 200 DELETE "/api/chats/$chat" "$alice"
check "deleted chat is gone" 404 GET "/api/chats/$chat" "$alice"
check "its messages are gone" 401 DELETE "/api/messages/$m2" "$bob"
check "listing them is 404" 404 GET "/api/messages?chat_id=$chat" "$alice"

echo "== web UI (through the gateway)"
request GET /
if [ "$STATUS" = 200 ]; then
    if [[ "$CTYPE" == text/html* ]]; then pass "index.html for / ($CTYPE)"; else fail "/ has Content-Type '$CTYPE'"; fi
    request GET /index.html
    if [ "$STATUS" = 200 ]; then pass "index.html by name (200)"; else fail "/index.html: expected 200, got $STATUS"; fi
    for path in /../../../etc/passwd /%2e%2e/%2e%2e/etc/passwd /assets/..%2f..%2fetc/passwd /no-such-file.js; do
        request GET "$path"
        if [ "$STATUS" = 404 ]; then pass "no file at $path (404)"; else fail "$path: expected 404, got $STATUS"; fi
    done
    request POST /
    if [ "$STATUS" = 405 ]; then pass "static files: wrong method (405)"; else fail "POST /: expected 405, got $STATUS"; fi
else
    echo "SKIP web UI checks: GET / is $STATUS (BASE_URL is not the gateway?)"
fi

echo "== truncator"
if [ "${SMOKE_TRUNCATE:-}" = 1 ]; then
    # As in the original app: no session needed, and ids restart at 1.
    check "truncate without a session" 200 GET /api/truncator
    check "sessions are gone after truncation" 401 GET /api/chats "$alice"
    check "new session after truncation" 201 GET /api/sessions
    carol="$(json_str session_id)"
    check "chats are empty after truncation" 200 GET /api/chats "$carol"
    expect "empty list" '^\[\]$'
    check "ids restart at 1" 201 POST /api/chats "$carol" '{"name":"first"}'
    expect "first id is 1" '^\{"id":1,'
else
    request POST /api/truncator
    case "$STATUS" in
        405) pass "truncator routed, wrong method (405)" ;;
        404) pass "truncator not routed (404)" ;;
        *) fail "POST /api/truncator: expected 405 or 404, got $STATUS: $BODY" ;;
    esac
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
