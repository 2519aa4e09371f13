/* libFuzzer target for the REST API server and router (api/server.c) with
 * the hub's admin routes and handlers (api/hub_api.c) on an in-memory
 * SQLite store, without a listener: as the unit tests do, the sources are
 * included here, and one connection is made by hand on one end of a
 * socketpair, the way on_connection makes one for an accepted socket
 * (tests/support/api_drive.h, shared with tests/unit/oom/test_oom_api.c).
 *
 * Input: one byte of flags (bit 0: the admin token is required, as on a
 * non-loopback listener), then the raw bytes a client sends (method, path,
 * headers, body; several requests may be pipelined). The client then
 * half-closes and reads until the server closes.
 *
 * Each input gets a fresh store holding one allocation (ab1234567890), so
 * a run is repeatable. The scrypt hash of a create is replaced by a
 * constant (it hashes a random password, never the input, and costs 50 ms
 * a call); the create still goes through the thread pool.
 *
 * Invariants:
 * - the server closes the connection once the client has gone, and frees
 *   it (no connection left, nothing pending);
 * - what comes back is a sequence of whole HTTP/1.1 responses, each with
 *   a Content-Length that matches, JSON when it says application/json;
 * - no 5xx: the store is in memory and nothing here fails on its own, so
 *   a 500 means a request made the server or a handler fail. */
#include "api/server.c"

/* The cheap stand-in for the password hash, used by hub_api.c only. */
static int fuzz_password_hash(const char *password, char *out, size_t outlen)
{
    (void)password;
    int n = snprintf(out, outlen, "%s", "scrypt$16384$8$1$ZnV6eg==$ZnV6eg==");
    return n < 0 || (size_t)n >= outlen ? SL_ETOOBIG : 0;
}
#define sl_password_hash fuzz_password_hash
#include "api/hub_api.c"
#undef sl_password_hash

#include <signal.h>
#include <unistd.h>

#include "api_drive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESPONSE_MAX (16 * 1024 * 1024)

static uv_loop_t loop;
static struct sl_ctx ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (uv_loop_init(&loop) != 0)
            abort();
        /* As the binary does: a write to a closed peer is an error, not
         * a signal. */
        signal(SIGPIPE, SIG_IGN);
        ctx.loop = &loop;
        ctx.log.level = SL_LOG_ERROR;
        ctx.log.out = fopen("/dev/null", "w");
        if (ctx.log.out == NULL)
            abort();
        ready = 1;
    }
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    const char *in = (const char *)data + 1;
    size_t in_len = size - 1;

    struct api_drive d;
    if (api_drive_open(&d, &ctx, RESPONSE_MAX) != 0)
        abort();
    d.srv->need_auth = flags & 1;
    d.srv->token = d.srv->need_auth ? strdup("fuzz-token") : NULL;
    if (d.srv->need_auth && d.srv->token == NULL)
        abort();
    conn_read_start(d.conn);
    /* The client: send, half-close, read until the server closes. */
    if (sl_test_client_send(d.client, in, in_len) != 0)
        abort();

    /* Ends when the server closed the connection and the client saw it;
     * a server that never answers nor closes hangs here (a timeout). */
    uv_run(&loop, UV_RUN_DEFAULT);

    size_t bad_at;
    if (!api_drive_closed(&d) ||
        api_drive_check(d.client->buf, d.client->len, &bad_at) < 0)
        abort();
    api_drive_free(&d);
    return 0;
}
