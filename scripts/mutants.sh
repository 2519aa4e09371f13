#!/usr/bin/env bash
# Mutation check: proof that the test suite catches bugs.
#
# Each mutant below is one deliberate bug, a unique textual replacement
# `old` -> `new` in one file of src/, that breaks one promise README.md or
# docs/ make (a security check, a limit, a timer, a parser bound). The
# script clones HEAD into a temporary folder, configures one gcc
# ASan+UBSan build there, and for each mutant: applies it (it must match
# exactly once, so the list fails loudly when the code moves), rebuilds
# incrementally, runs the unit tests and the e2e tests the mutant names
# (stopping at the first failure), and reverts. If the named tests all
# pass, the whole unit suite runs before the mutant is called MISSED.
# With --full, the whole e2e suite runs instead of the named e2e tests.
#
# usage: scripts/mutants.sh [--list] [--only NAME[,NAME...]] [--full]
#   --list   print the mutants and exit
#   --only   run only these mutants (comma-separated names)
#   --full   run the whole e2e suite for each mutant
# Environment: SLUICE_TEST_TIMEOUT_SCALE scales the e2e timeouts and this
# script's per-run bounds; SLUICE_MUTANT_TIMEOUT (seconds, default 300)
# bounds each test run before scaling.
#
# A build error means the mutant is not valid (fix the list): the script
# exits 2. A MISSED mutant is a gap in the suite: the script exits 1.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
scale=${SLUICE_TEST_TIMEOUT_SCALE:-1}
run_limit=$(awk -v s="$scale" -v t="${SLUICE_MUTANT_TIMEOUT:-300}" \
            'BEGIN{printf "%d", (s < 1 ? 1 : s) * t}')

# name | file | old | new | promise | tests (unit:NAME or e2e:NODEID, ';')
names=() files=() olds=() news=() promises=() tests=()
mutant() {
    names+=("$1") files+=("$2") olds+=("$3") news+=("$4") promises+=("$5")
    tests+=("$6")
}

# core
mutant core-pct-decode-bound src/core/str.c \
    'if (o + 1 >= cap)' \
    'if (o >= cap)' \
    'percent-decoding stays inside its buffer (room for the NUL)' \
    'unit:core_str'
# net
mutant net-head-end-bound src/net/http_head.c \
    'return end <= max ? (ssize_t)end : SL_ETOOBIG;' \
    'return (ssize_t)end;' \
    'a complete request head longer than the limit is refused' \
    'unit:http_head;e2e:tests/e2e/test_api_proxy.py::test_head_limit_and_keepalive'
mutant net-head-size-limit src/net/http_head.c \
    'return len >= max ? SL_ETOOBIG : 0;' \
    'return 0;' \
    'an unfinished head over 64 KiB is answered 431' \
    'unit:http_head;e2e:tests/e2e/test_tunnel_x_security.py::test_oversized_head_cut_off'
mutant net-ws-dead-ms src/net/ws.c \
    'if (now - ws->last_rx >= ws->dead_ms) {' \
    'if (now - ws->last_rx >= ws->dead_ms * 1000) {' \
    'a WebSocket peer silent for dead_ms is closed as dead' \
    'unit:ws;e2e:tests/e2e/test_tunnel_hub.py::test_dead_control_connection_closed;e2e:tests/e2e/test_tunnel_node.py::test_dead_hub_detected'
mutant net-ws-max-msg src/net/ws.c \
    'ws->max_msg = opts->max_msg ? opts->max_msg : SL_WS_MAX_MSG_DATA;' \
    'ws->max_msg = SL_WS_MAX_MSG_DATA;' \
    'a WebSocket message over the connection max (64 KiB on control) is refused' \
    'unit:ws'
mutant net-head-exact-consume src/net/http_head.c \
    'if (n + 1 != len) {' \
    'if (n + 1 != len && 0) {' \
    'a head the parser ends before its last byte (smuggling) is refused' \
    'unit:http_hostile;e2e:tests/e2e/test_hardening_http.py::test_smuggling_refused'
mutant net-ws-read-stop src/net/ws.c \
    'if (!ws->out_full && q > ws->read_stop) {' \
    'if (0) {' \
    'a peer that floods pings and never reads stops being read' \
    'e2e:tests/e2e/test_hardening_ws.py::test_ping_flood_unread_hub_memory_bounded'
mutant core-log-escape src/core/log.c \
    'sl_log_escape(msg, safe, sizeof(safe));' \
    'snprintf(safe, sizeof(safe), "%s", msg);' \
    'control characters from peers never reach a text log line raw' \
    'unit:core_log_size;e2e:tests/e2e/test_hardening_alloc.py::test_control_characters_from_hub_are_escaped'
# proto
mutant proto-acl-deny src/proto/acl.c \
    'if (!r->allow && r->family == family &&' \
    'if (!r->allow && r->family != family &&' \
    'a deny rule refuses the sources it matches' \
    'unit:proto_acl;e2e:tests/e2e/test_streams_tcp.py::test_acl_deny_tcp_never_dials'
mutant proto-v2-length src/proto/proxy_proto.c \
    'if (total > SL_PP_MAX_HEADER)' \
    'if (total > SL_PP_MAX_HEADER + 1)' \
    'a PROXY v2 header longer than 1024 bytes is refused' \
    'unit:proto_proxy_proto'
mutant proto-v2-tlv-bound src/proto/proxy_proto.c \
    'if (vlen > n - off - 3)' \
    'if (vlen > n - off)' \
    'a PROXY v2 TLV whose length overruns the header block is refused' \
    'unit:proto_proxy_proto;unit:proto_proxy_proto_bounds'
# config
mutant config-port-range src/config/config.c \
    'if (parse_uint(colon + 1, 65535, &t) != 0 || t == 0)' \
    'if (parse_uint(colon + 1, 65536, &t) != 0 || t == 0)' \
    'a target port outside 1-65535 is a config error' \
    'unit:config'
# stream
mutant stream-conn-limit src/stream/hooks.c \
    '*lim->active < lim->max)' \
    '*lim->active <= lim->max)' \
    'max_connections: connection max+1 is refused' \
    'unit:stream_hooks;e2e:tests/e2e/test_streams_tcp.py::test_connection_limit'
mutant stream-udp-session-limit src/stream/udp_route.c \
    'route->limit.max = max;' \
    'route->limit.max = max * 2;' \
    'max_connections on a UDP route bounds its sessions' \
    'e2e:tests/e2e/test_streams_udp.py::test_udp_session_limit'
mutant stream-udp-idle src/stream/udp_route.c \
    'if (now - s->last_ms >= idle)' \
    'if (now - s->last_ms >= idle * 1000)' \
    'a UDP session idle for udp_idle_timeout expires' \
    'e2e:tests/e2e/test_streams_udp.py::test_udp_idle_session_expires'
mutant stream-drain-grace src/stream/streams.c \
    'uv_timer_start(&s->grace_timer, on_grace_over, grace, 0);' \
    'uv_timer_start(&s->grace_timer, on_grace_over, grace * 1000, 0);' \
    'after SIGTERM, live connections are closed when the drain grace ends' \
    'e2e:tests/e2e/test_streams_tcp.py::test_sigterm_closes_idle_live_connection_after_grace'
mutant stream-pp-trusted src/stream/tcp_route.c \
    'return sl_acl_allows(rc->pp_trusted, peer);' \
    'return 1;' \
    'a PROXY header from an untrusted source is not believed' \
    'e2e:tests/e2e/test_streams_proxy_protocol.py::test_untrusted_source_header_not_believed;e2e:tests/e2e/test_hardening_streams.py::test_proxy_header_forged_by_non_loopback_source_is_not_believed'
mutant stream-pp-timeout src/stream/tcp_route.c \
    'uv_timer_start(&c->timer, on_pp_timeout, timeout, 0);' \
    'uv_timer_start(&c->timer, on_pp_timeout, timeout * 1000, 0);' \
    'a client that sends no PROXY header within the timeout is closed' \
    'e2e:tests/e2e/test_streams_proxy_protocol.py::test_required_mode_closes_without_header;e2e:tests/e2e/test_streams_robustness.py::test_clients_leave_during_dial_and_header'
# tunnel
mutant tunnel-password-check src/tunnel/creds.c \
    'rc = CRYPTO_memcmp(got, want, (size_t)keylen) == 0;' \
    'rc = 1;' \
    'a wrong password is refused' \
    'unit:tunnel_creds;e2e:tests/e2e/test_tunnel_hub.py::test_wrong_password_401_then_rate_limited'
mutant tunnel-hello-pool-cap src/tunnel/control.c \
    'get_int(o, "pool", 0, 0, SL_CTL_POOL_MAX, &m->hello.pool) != 0)' \
    'get_int(o, "pool", 0, 0, 1 << 20, &m->hello.pool) != 0)' \
    'a hello asking for a pool over 16 is a protocol error' \
    'unit:tunnel_control'
# hub
mutant hub-gateway-token src/hub/hub_bridge.c \
    '!sl_token_equal(tok, hub->s_token)) {' \
    '!sl_token_equal(hub->s_token, hub->s_token)) {' \
    'a bridge without the right gateway token is answered 401' \
    'e2e:tests/e2e/test_tunnel_hub.py::test_gateway_token;e2e:tests/e2e/test_tunnel_node.py::test_gateway_token;e2e:tests/e2e/test_mutant_gaps.py::test_gateway_token_wrong_value_refused'
mutant hub-traffic-quota src/hub/hub.c \
    'if (a->total.user_down + a->total.user_up < a->limits.traffic)' \
    'if (a->total.user_down + a->total.user_up < a->limits.traffic * 2)' \
    'an allocation over its traffic limit gets 429' \
    'e2e:tests/e2e/test_tunnel_x_limits.py::test_traffic_limit_1mb;e2e:tests/e2e/test_tunnel_hub.py::test_traffic_limit'
mutant hub-head-timeout src/hub/hub.c \
    ': SL_HTTP_HEAD_TIMEOUT_MS;
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);' \
    ': SL_HTTP_HEAD_TIMEOUT_MS;
    uv_timer_start(&c->timer, on_conn_timer, ms * 1000, 0);' \
    'a request head not complete within head_timeout is answered 408' \
    'e2e:tests/e2e/test_tunnel_hub.py::test_slowloris_head_cut_off;e2e:tests/e2e/test_tunnel_x_security.py::test_slowloris_head_cut_off'
mutant hub-pool-cap src/hub/hub_bridge.c \
    'if (a->npool >= HUB_POOL_MAX) {' \
    'if (a->npool >= HUB_POOL_MAX * 64) {' \
    'an allocation holds at most 16 idle pool connections (the 17th gets 429)' \
    'e2e:tests/e2e/test_mutant_gaps.py::test_hub_pool_capped_at_16'
mutant hub-foreign-identity src/hub/hub_bridge.c \
    'if (strcmp(c->hijack.identity, a->identity) != 0) {' \
    'if (strcmp(c->hijack.identity, a->identity) != 0 && 0) {' \
    'a data connection naming an identity its credentials do not own gets 403' \
    'e2e:tests/e2e/test_tunnel_hub.py::test_hijack_malformed_400_and_foreign_identity_403;e2e:tests/e2e/test_tunnel_x_security.py::test_identity_not_belonging_to_credentials'
mutant hub-cookie-isolation src/hub/hub_user.c \
    'sl_cookies_isolation(u->hub->opts.cookie_isolation, u->hub->s_domain);' \
    'sl_cookies_isolation(u->hub->opts.cookie_isolation, u->hub->s_domain) && 0;' \
    'one tenant cannot set cookies on another (Domain of the hub domain removed)' \
    'e2e:tests/e2e/test_hardening_hub_http.py::test_cookie_of_one_tenant_never_reaches_another'
mutant hub-client-timeout src/hub/hub_caps.c \
    'limit = hub->client_ms;
        doing = "reading the request body";' \
    'limit = hub->client_ms * 1000;
        doing = "reading the request body";' \
    'a request body that stalls is answered 408 after the client timeout' \
    'e2e:tests/e2e/test_hardening_caps.py::test_slow_post_bodies_time_out'
mutant hub-per-source-cap src/hub/hub_caps.c \
    'if (s->nusers >= c->hub->max_conns_per_ip)' \
    'if (0)' \
    'one source holds at most --max-conns-per-ip user connections (429)' \
    'e2e:tests/e2e/test_hardening_caps.py::test_cap_per_source_address'
mutant hub-dead-pool src/hub/hub_bridge.c \
    'if (reason == UV_ETIMEDOUT && c->bridge_id[0] != '"'"'\0'"'"')' \
    'if (0)' \
    'a bridge dead of silence takes its idle pool with it (users get 502 at once)' \
    'e2e:tests/e2e/test_faults.py::test_partition_detected_users_get_502_bridge_returns'
mutant hub-alloc-rate src/hub/hub_guard.c \
    'if (src->tokens < 1.0) {' \
    'if (0) {' \
    'new allocations are rate-limited per source' \
    'e2e:tests/e2e/test_hardening_alloc.py::test_allocations_rate_limited_per_source'
# node
mutant node-pool-size src/node/node.c \
    'b->pool_idle < node->pool_size;' \
    'b->pool_idle <= node->pool_size;' \
    'a bridge keeps --pool idle data connections, no more' \
    'e2e:tests/e2e/test_mutant_gaps.py::test_node_keeps_its_pool_size_idle'
mutant node-private-upstream src/node/node_conn.c \
    'if (!b->node->allow_public) {' \
    'if (b->node->allow_public) {' \
    'a bridge refuses a public upstream unless --allow-public-upstream' \
    'e2e:tests/e2e/test_tunnel_node.py::test_public_upstream_refused'
mutant node-url-port src/node/node_url.c \
    'if (end - p > 5 || port < 1 || port > 65535)' \
    'if (end - p > 5 || port < 1 || port > 99999)' \
    'an upstream URL port outside 1-65535 is refused' \
    'unit:node_url'
# api
mutant api-origin-refusal src/api/server.c \
    'if (c->from_browser)' \
    'if (c->from_browser && 0)' \
    'without a token, a request with Origin/Sec-Fetch-Site is refused' \
    'unit:api_server;e2e:tests/e2e/test_api_proxy.py::test_web_pages_refused_without_token'
mutant api-host-refusal src/api/server.c \
    '!host_is_local(c->host, c->host_len)))' \
    '!host_is_local("localhost", 9)))' \
    'without a token, a Host naming another machine is refused' \
    'unit:api_server;e2e:tests/e2e/test_api_proxy.py::test_web_pages_refused_without_token'
mutant api-bearer-token src/api/server.c \
    'return sl_token_equal(tok, srv->token);' \
    'return sl_token_equal(srv->token, srv->token);' \
    'with an admin token, a wrong bearer token is answered 401' \
    'unit:api_server;e2e:tests/e2e/test_api_proxy.py::test_token_required'
# cli
mutant cli-config-check-status src/cli/cli_config.c \
    'fprintf(stderr, "%s: %s\n", path, err[0] ? err : "invalid");
        return 1;' \
    'fprintf(stderr, "%s: %s\n", path, err[0] ? err : "invalid");
        return 0;' \
    'config check exits 1 on an invalid file' \
    'e2e:tests/e2e/test_streams_cli.py::test_config_check_names_bad_field'

only="" full=0 list=0
while [ $# -gt 0 ]; do
    case "$1" in
    --list) list=1 ;;
    --full) full=1 ;;
    --only) shift; only="${1:-}" ;;
    --only=*) only="${1#--only=}" ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "mutants: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done

selected=()
for i in "${!names[@]}"; do
    if [ -z "$only" ] || [[ ",$only," == *",${names[$i]},"* ]]; then
        selected+=("$i")
    fi
done
if [ -n "$only" ]; then
    IFS=, read -ra want <<<"$only"
    for w in "${want[@]}"; do
        found=0
        for i in "${!names[@]}"; do [ "${names[$i]}" = "$w" ] && found=1; done
        [ $found -eq 1 ] || { echo "mutants: no mutant named '$w'" >&2; exit 2; }
    done
fi

if [ $list -eq 1 ]; then
    for i in "${selected[@]}"; do
        printf '%-26s %-28s %s\n' "${names[$i]}" "${files[$i]}" "${promises[$i]}"
        printf '%-26s tests: %s\n' "" "${tests[$i]//;/ }"
    done
    exit 0
fi

# The clone, its build, and every process started from them end with us.
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-mutants.XXXXXX")
current_pid=""
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$current_pid" ]; then
        kill -TERM -- "-$current_pid" 2>/dev/null
        sleep 1
        kill -KILL -- "-$current_pid" 2>/dev/null
    fi
    # Whatever survived (a sluice or peer a killed pytest left): only the
    # processes whose binary or command line lies inside our folder.
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = "$$" ] && continue
        exe=$(readlink "$p/exe" 2>/dev/null || true)
        cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline" || true)
        case "$exe $cmd" in
        *"$work"*) kill -KILL "$pid" 2>/dev/null ;;
        esac
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs "$@" bounded by $1 seconds in its own process group, output to $2.
bounded() {
    local limit=$1 out=$2
    shift 2
    setsid timeout -k 10 "$limit" "$@" >"$out" 2>&1 &
    current_pid=$!
    wait "$current_pid"
    local rc=$?
    current_pid=""
    return $rc
}

src="$work/src"
build="$work/build"
echo "mutants: cloning HEAD ($(git -C "$repo" rev-parse --short HEAD)) into a temporary folder"
git clone -q --no-hardlinks "$repo" "$src" || exit 2
# Every mutant must apply exactly once before anything is built.
apply() { # apply|check INDEX
    "$py" - "$1" "$src/${files[$2]}" "${olds[$2]}" "${news[$2]}" <<'EOF'
import sys
mode, path, old, new = sys.argv[1:5]
text = open(path, encoding="utf-8").read()
n = text.count(old)
if n != 1:
    sys.exit(f"{path}: the old text occurs {n} times, not once")
if mode == "apply":
    open(path, "w", encoding="utf-8").write(text.replace(old, new, 1))
EOF
}
bad=0
for i in "${selected[@]}"; do
    apply check "$i" || { echo "mutant ${names[$i]}: does not apply"; bad=1; }
done
[ $bad -eq 0 ] || { echo "mutants: fix the list"; exit 2; }

echo "mutants: configuring and building the ASan+UBSan build (gcc)"
(cd "$src" && CC=gcc meson setup "$build" -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debug >"$work/setup.log" 2>&1) ||
    { tail -30 "$work/setup.log"; exit 2; }
ninja -C "$build" >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 2; }

export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export SLUICE_BIN="$build/sluice"
export SLUICE_TEST_TIMEOUT_SCALE="$scale"

# Every unit test name, from the build.
mapfile -t all_units < <(meson test -C "$build" --list --suite unit 2>/dev/null |
                         sed -n 's/^sluice:unit \/ //p; s/^sluice:unit\/\{0,1\} *//p' |
                         awk '{print $NF}' | sort -u)

run_unit() { # NAME LOG
    bounded "$run_limit" "$2" meson test -C "$build" --no-rebuild \
        --print-errorlogs "$1"
}
run_e2e() { # NODEID... LOG (last)
    local log=${*: -1}
    local ids=("${@:1:$#-1}")
    bounded "$run_limit" "$log" env -C "$src" "$py" -m pytest -x -q -rfE \
        -p no:cacheprovider --basetemp="$work/pytest" "${ids[@]}"
}
first_failed() { # LOG: the first failing pytest node id
    grep -m1 -oE '^(FAILED|ERROR) [^ ]+' "$1" | awk '{print $2}'
}

results=() verdicts=()
invalid=0 missed=0
n=0
for i in "${selected[@]}"; do
    n=$((n + 1))
    name=${names[$i]}
    log="$work/$name"
    echo
    echo "== [$n/${#selected[@]}] $name: ${promises[$i]}"
    apply apply "$i" || { verdicts+=("INVALID (does not apply)"); results+=("$i"); invalid=1; continue; }
    verdict=""
    if ! ninja -C "$build" >"$log.build" 2>&1; then
        tail -20 "$log.build"
        verdict="INVALID (build error)"
        invalid=1
    fi
    if [ -z "$verdict" ]; then
        IFS=';' read -ra ts <<<"${tests[$i]}"
        e2e_ids=()
        for t in "${ts[@]}"; do
            case "$t" in
            unit:*)
                [ -n "$verdict" ] && continue
                if ! run_unit "${t#unit:}" "$log.unit.${t#unit:}"; then
                    verdict="CAUGHT by unit ${t#unit:}"
                fi ;;
            e2e:*) e2e_ids+=("${t#e2e:}") ;;
            esac
        done
        if [ -z "$verdict" ] && [ $full -eq 1 ]; then
            e2e_ids=(tests/e2e)
        fi
        if [ -z "$verdict" ] && [ ${#e2e_ids[@]} -gt 0 ]; then
            run_e2e "${e2e_ids[@]}" "$log.e2e"
            rc=$?
            if [ $rc -eq 4 ] || [ $rc -eq 5 ]; then
                tail -5 "$log.e2e"
                verdict="INVALID (pytest found no such test)"
                invalid=1
            elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
                verdict="CAUGHT by e2e timeout (${run_limit}s) in ${e2e_ids[*]}"
            elif [ $rc -ne 0 ]; then
                f=$(first_failed "$log.e2e")
                verdict="CAUGHT by ${f:-pytest exit $rc}"
            fi
        fi
        if [ -z "$verdict" ]; then
            # The named tests passed: the whole unit suite has the last word.
            for u in "${all_units[@]}"; do
                if ! run_unit "$u" "$log.unit.$u"; then
                    verdict="CAUGHT by unit $u (not named)"
                    break
                fi
            done
        fi
        if [ -z "$verdict" ]; then
            verdict="MISSED"
            missed=1
        fi
    fi
    git -C "$src" checkout -q -- "${files[$i]}"
    echo "   $verdict"
    results+=("$i")
    verdicts+=("$verdict")
done

# Leave the tree as HEAD for the next run's incremental build.
echo
echo "| mutant | promise it breaks | result |"
echo "|---|---|---|"
for k in "${!results[@]}"; do
    i=${results[$k]}
    echo "| \`${names[$i]}\` | ${promises[$i]} | ${verdicts[$k]} |"
done
[ $invalid -eq 0 ] || exit 2
[ $missed -eq 0 ] || exit 1
exit 0
