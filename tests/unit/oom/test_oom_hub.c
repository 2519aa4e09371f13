/* Allocation failure while the hub sets up connections: a user request
 * for an identity and a bridge's control upgrade (101, hello, welcome),
 * each with the 1st, 2nd, ... allocation failing. The hub runs on a libuv
 * loop in this process on a loopback port; the client is a plain socket.
 * Each failure must cost that connection only: the client gets an answer
 * or a close, the hub frees the connection, nothing leaks, and the next
 * connection (the next N) is served. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "core/ctx.h"
#include "core/error.h"
#include "hub/hub.h"
#include "hub/hub_int.h"
#include "core/b64.h"
#include "tunnel/identity.h"

#include "oom.h"

static uv_loop_t loop;
static struct sl_ctx ctx;

/* Wall-clock bound on one exchange: a hub that neither answers nor closes
 * fails the test instead of hanging it. */
#define EXCHANGE_MS 10000

struct exchange {
    const char *request;
    int upgrade;      /* send hello after the 101, done at the first frame */
    char resp[8192];
    size_t len;
    int closed;       /* the hub closed the connection */
    int answered;     /* a 101 and a frame, or a whole answer */
};

/* 1 if the server frames in p hold a whole text or close frame. */
static int frames_answer(const char *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t off = 0;
    while (n - off >= 2) {
        unsigned op = b[off] & 0x0f;
        size_t len = b[off + 1] & 0x7f, hl = 2;
        if (len == 126) {
            if (n - off < 4)
                return 0;
            len = (size_t)b[off + 2] << 8 | b[off + 3];
            hl = 4;
        } else if (len == 127) {
            return 0; /* the hub sends nothing that long here */
        }
        if (n - off < hl + len)
            return 0;
        if (op == 0x1 || op == 0x8)
            return 1;
        off += hl + len;
    }
    return 0;
}

/* A socket to the hub, the request sent. */
static int hub_connect(const char *req)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)ctx.hub->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    /* Loopback: the kernel completes it from the backlog. */
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    size_t n = strlen(req);
    assert_int_equal(send(fd, req, n, MSG_NOSIGNAL), (ssize_t)n);
    return fd;
}

static void run_exchange(struct exchange *x)
{
    static const char hello[] = "{\"type\":\"hello\",\"version\":1,"
                                "\"capabilities\":[\"http\"]}";
    int fd = hub_connect(x->request);
    x->len = 0;
    x->closed = x->answered = 0;
    int hello_sent = 0;
    uint64_t deadline = uv_hrtime() / 1000000 + EXCHANGE_MS;
    while (!x->closed && !x->answered) {
        if (uv_hrtime() / 1000000 > deadline)
            fail_msg("the hub neither answered nor closed (%ld allocations, "
                     "%s failed): %.*s", sl_test_alloc_count(),
                     sl_test_alloc_failed() ? "one" : "none", (int)x->len,
                     x->resp);
        uv_run(&loop, UV_RUN_NOWAIT);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2) <= 0)
            continue;
        ssize_t n = recv(fd, x->resp + x->len, sizeof(x->resp) - 1 - x->len,
                         0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            x->closed = 1;
            break;
        }
        if (n < 0)
            continue;
        x->len += (size_t)n;
        x->resp[x->len] = '\0';
        const char *end = strstr(x->resp, "\r\n\r\n");
        if (end == NULL)
            continue;
        size_t head = (size_t)(end + 4 - x->resp);
        if (x->upgrade && strncmp(x->resp, "HTTP/1.1 101", 12) == 0) {
            if (!hello_sent) {
                /* A masked text frame; the zero key leaves it readable. */
                unsigned char f[6 + sizeof(hello)];
                f[0] = 0x81;
                f[1] = 0x80 | (unsigned char)(sizeof(hello) - 1);
                memset(f + 2, 0, 4);
                memcpy(f + 6, hello, sizeof(hello) - 1);
                size_t fl = 6 + sizeof(hello) - 1;
                assert_int_equal(send(fd, f, fl, MSG_NOSIGNAL), (ssize_t)fl);
                hello_sent = 1;
            }
            /* A whole text frame (the welcome or an error) or the hub's
             * close frame: waiting for the close to finish would only
             * wait out the hub's close timeout. */
            if (frames_answer(x->resp + head, x->len - head))
                x->answered = 1;
        } else if (!x->upgrade) {
            x->answered = 1; /* Connection: close follows */
        }
    }
    close(fd);
    /* The hub sees the close and frees the connection. */
    while (!sl_list_empty(&ctx.hub->conns)) {
        if (uv_hrtime() / 1000000 > deadline)
            fail_msg("the hub kept a connection after the client left");
        uv_run(&loop, UV_RUN_NOWAIT);
        struct pollfd none;
        (void)poll(&none, 0, 1);
    }
}

static int run_user_request(void *arg)
{
    (void)arg;
    struct exchange x;
    x.request = "GET /index.html HTTP/1.1\r\n"
                "Host: ab1234567890.localhost\r\n"
                "User-Agent: curl/8.5.0\r\nAccept: */*\r\n"
                "Connection: close\r\n\r\n";
    x.upgrade = 0;
    run_exchange(&x);
    if (sl_test_alloc_failed())
        return x.answered || x.closed ? 0 : -1;
    /* Nothing failed: the hub's answer for an unknown identity. */
    assert_true(x.answered);
    assert_non_null(strstr(x.resp, "Proxy not available"));
    return 0;
}

static void user_request(void **state)
{
    (void)state;
    sl_oom_loop("hub: a user request", run_user_request, NULL);
}

static void hub_start(void);
static void hub_stop(void);
/* The next hub_start's cookie isolation. */
static int cookies = SL_HUB_COOKIES_AUTO;

struct inbox {
    char b[16384];
    size_t len;
    int closed;
};

/* Runs the hub's loop and reads fd into in until done(in) or the hub
 * closes it; 1 if done. */
static int pump(int fd, struct inbox *in, int (*done)(const struct inbox *))
{
    uint64_t deadline = uv_hrtime() / 1000000 + EXCHANGE_MS;
    while (!done(in) && !in->closed) {
        if (uv_hrtime() / 1000000 > deadline)
            fail_msg("the hub neither answered nor closed (%ld allocations, "
                     "%s failed): %.*s", sl_test_alloc_count(),
                     sl_test_alloc_failed() ? "one" : "none", (int)in->len,
                     in->b);
        uv_run(&loop, UV_RUN_NOWAIT);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2) <= 0)
            continue;
        ssize_t n = recv(fd, in->b + in->len, sizeof(in->b) - 1 - in->len, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            in->closed = 1;
        else if (n > 0)
            in->len += (size_t)n;
        in->b[in->len] = '\0';
    }
    return done(in);
}

static const char *body_of(const struct inbox *in)
{
    const char *e = strstr(in->b, "\r\n\r\n");
    return e ? e + 4 : NULL;
}

static int got_head(const struct inbox *in)
{
    return body_of(in) != NULL;
}

/* The 101 of a pool connection, then the user's head. */
static int got_two_heads(const struct inbox *in)
{
    const char *b = body_of(in);
    return b && strstr(b, "\r\n\r\n") != NULL;
}

static int got_frame(const struct inbox *in)
{
    const char *b = body_of(in);
    return b && frames_answer(b, in->len - (size_t)(b - in->b));
}

/* A response with Content-Length 5, whole. */
static int got_response(const struct inbox *in)
{
    const char *b = body_of(in);
    return b && in->len - (size_t)(b - in->b) >= 5;
}

/* The string value of "name" in the JSON text in p[0..n), into out. */
static void json_field(const char *p, size_t n, const char *name, char *out,
                       size_t cap)
{
    char key[32];
    snprintf(key, sizeof(key), "\"%s\":\"", name);
    const char *v = memmem(p, n, key, strlen(key));
    assert_non_null(v);
    v += strlen(key);
    const char *e = strchr(v, '"');
    assert_true(e != NULL && (size_t)(e - v) < cap);
    memcpy(out, v, (size_t)(e - v));
    out[e - v] = '\0';
}

struct bridge {
    int ctl, data;
    char identity[32];
};

/* A bridge as the node is one (set up with nothing failing): a control
 * connection that got its welcome, and one idle pool data connection
 * (raw) the hub holds for the next user. */
static void bridge_up(struct bridge *br)
{
    static const char hello[] = "{\"type\":\"hello\",\"version\":1,"
                                "\"capabilities\":[\"http\"],\"pool\":1}";
    struct inbox in;
    memset(&in, 0, sizeof(in));
    br->ctl = hub_connect("GET /_sluice/v1/control HTTP/1.1\r\n"
                          "Host: localhost\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n");
    assert_true(pump(br->ctl, &in, got_head));
    unsigned char f[6 + sizeof(hello)];
    f[0] = 0x81;
    f[1] = 0x80 | (unsigned char)(sizeof(hello) - 1);
    memset(f + 2, 0, 4);
    memcpy(f + 6, hello, sizeof(hello) - 1);
    assert_int_equal(send(br->ctl, f, 6 + sizeof(hello) - 1, MSG_NOSIGNAL),
                     (ssize_t)(6 + sizeof(hello) - 1));
    assert_true(pump(br->ctl, &in, got_frame));
    char user[64], pass[64], cred[160], b64[256], fp[SL_UUID_LEN + 1];
    /* The frame's header may hold a zero byte: not a C string. */
    const char *w = body_of(&in);
    size_t wn = in.len - (size_t)(w - in.b);
    json_field(w, wn, "identity", br->identity, sizeof(br->identity));
    json_field(w, wn, "username", user, sizeof(user));
    json_field(w, wn, "password", pass, sizeof(pass));
    int cl = snprintf(cred, sizeof(cred), "%s:%s", user, pass);
    assert_true(sl_b64_encode(cred, (size_t)cl, b64, sizeof(b64)) > 0);
    assert_int_equal(sl_uuid4_new(fp), 0);
    char req[1024];
    snprintf(req, sizeof(req),
             "GET /_sluice/v1/data HTTP/1.1\r\nHost: localhost\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\nAuthorization: Basic %s\r\n"
             "Sluice-Hijack: %s|%s\r\nSluice-Framing: raw\r\n\r\n",
             b64, br->identity, fp);
    /* A pool connection gets its 101 when a user is paired with it. */
    br->data = hub_connect(req);
    struct hub_alloc *a = hub_alloc_get(ctx.hub, br->identity);
    assert_non_null(a);
    uint64_t deadline = uv_hrtime() / 1000000 + EXCHANGE_MS;
    while (a->npool == 0) {
        assert_true(uv_hrtime() / 1000000 < deadline);
        uv_run(&loop, UV_RUN_NOWAIT);
        (void)poll(NULL, 0, 1);
    }
}

/* A user's request through the hub to the bridge and its answer back:
 * the head rewrite (X-Forwarded-*), pairing with the pool connection,
 * and cookie isolation holding and rewriting the response head. */
static int run_paired(void *arg)
{
    (void)arg;
    struct bridge br;
    sl_test_alloc_pause(1);
    hub_stop();
    cookies = SL_HUB_COOKIES_ON;
    hub_start();
    cookies = SL_HUB_COOKIES_AUTO;
    bridge_up(&br);
    sl_test_alloc_pause(0);

    char req[512];
    snprintf(req, sizeof(req),
             "GET /account/settings?tab=2 HTTP/1.1\r\n"
             "Host: %s.localhost\r\nUser-Agent: Mozilla/5.0 (X11; Linux "
             "x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
             "Accept: text/html,application/xhtml+xml\r\n"
             "Accept-Language: en-GB,en;q=0.5\r\n"
             "Cookie: session=abc123; theme=dark\r\n"
             "X-Forwarded-For: 203.0.113.9\r\n"
             "X-Forwarded-Proto: https\r\n"
             "Connection: close\r\n\r\n", br.identity);
    int user = hub_connect(req);
    struct inbox up, down;
    memset(&up, 0, sizeof(up));
    memset(&down, 0, sizeof(down));
    /* The bridge answers once the user's head reaches it; the user may
     * be answered by the hub instead (a 5xx) or closed. */
    static const char resp[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
        "Set-Cookie: session=abc123; Domain=.localhost; Path=/\r\n"
        "Set-Cookie: theme=dark; Path=/\r\n"
        "Content-Length: 5\r\nConnection: close\r\n\r\nhello";
    int forwarded = 0;
    uint64_t until = uv_hrtime() / 1000000 + EXCHANGE_MS;
    while (!got_response(&down) && !down.closed) {
        if (uv_hrtime() / 1000000 > until)
            fail_msg("the user got neither an answer nor a close (%ld "
                     "allocations, %s failed): %s | bridge got: %s",
                     sl_test_alloc_count(),
                     sl_test_alloc_failed() ? "one" : "none", down.b, up.b);
        uv_run(&loop, UV_RUN_NOWAIT);
        struct pollfd p[2] = {{user, POLLIN, 0}, {br.data, POLLIN, 0}};
        if (poll(p, up.closed ? 1 : 2, 2) <= 0)
            continue;
        struct inbox *ins[2] = {&down, &up};
        int fds[2] = {user, br.data};
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)) ||
                ins[i]->closed)
                continue;
            struct inbox *in = ins[i];
            ssize_t n = recv(fds[i], in->b + in->len,
                             sizeof(in->b) - 1 - in->len, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                in->closed = 1;
            else if (n > 0)
                in->len += (size_t)n;
            in->b[in->len] = '\0';
        }
        if (!forwarded && got_two_heads(&up)) {
            forwarded = 1;
            if (send(br.data, resp, sizeof(resp) - 1, MSG_NOSIGNAL) < 0)
                assert_true(errno == EPIPE || errno == ECONNRESET);
        }
    }
    close(user);
    close(br.data);
    close(br.ctl);
    uint64_t deadline = uv_hrtime() / 1000000 + EXCHANGE_MS;
    while (!sl_list_empty(&ctx.hub->conns)) {
        if (uv_hrtime() / 1000000 > deadline)
            fail_msg("the hub kept a connection after the clients left");
        uv_run(&loop, UV_RUN_NOWAIT);
        (void)poll(NULL, 0, 1);
    }
    if (sl_test_alloc_failed())
        return 0; /* answered or closed, and everything freed */
    if (!forwarded || strncmp(up.b, "HTTP/1.1 101", 12) != 0 ||
        strstr(up.b, "X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n") == NULL ||
        strstr(up.b, "X-Forwarded-Proto: http\r\n") == NULL ||
        strstr(up.b, "https") != NULL)
        fail_msg("the head the bridge got: %s", up.b);
    if (strncmp(down.b, "HTTP/1.1 200", 12) != 0 ||
        strstr(down.b, "Domain") != NULL ||
        strcmp(body_of(&down), "hello") != 0)
        fail_msg("the answer the user got: %s", down.b);
    return 0;
}

static void paired_request(void **state)
{
    (void)state;
    sl_oom_loop("hub: a user request through a bridge", run_paired, NULL);
}

/* A fresh hub for each run: a new allocation each time would soon meet
 * the hub's allocation rate limit (429). */
static int run_control(void *arg)
{
    (void)arg;
    sl_test_alloc_pause(1);
    hub_stop();
    hub_start();
    sl_test_alloc_pause(0);
    struct exchange x;
    x.request = "GET /_sluice/v1/control HTTP/1.1\r\n"
                "Host: localhost\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n";
    x.upgrade = 1;
    run_exchange(&x);
    if (sl_test_alloc_failed())
        return 0;
    if (!x.answered) {
        const char *e = strstr(x.resp, "\r\n\r\n");
        size_t h = e ? (size_t)(e + 4 - x.resp) : x.len;
        fail_msg("no answer after hello (closed %d): %zu bytes after the "
                 "head: %.*s", x.closed, x.len - h, (int)(x.len - h),
                 x.resp + h);
    }
    if (memmem(x.resp, x.len, "\"welcome\"", 9) == NULL)
        fail_msg("no welcome: %s", x.resp);
    return 0;
}

static void control_upgrade(void **state)
{
    (void)state;
    sl_oom_loop("hub: a control upgrade", run_control, NULL);
}

static void hub_start(void)
{
    struct sl_hub_options o;
    memset(&o, 0, sizeof(o));
    o.http_addr = "127.0.0.1:0";
    o.cookie_isolation = cookies;
    assert_int_equal(sl_hub_start(&ctx, &o), 0);
}

static void on_stopped(void *arg)
{
    *(int *)arg = 1;
}

static void hub_stop(void)
{
    int stopped = 0;
    sl_hub_stop(ctx.hub, on_stopped, &stopped);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(stopped);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    ctx.loop = &loop;
    /* SL_OOM_LOG=1: the hub's log on stderr. */
    ctx.log.level = getenv("SL_OOM_LOG") ? SL_LOG_DEBUG : SL_LOG_ERROR;
    ctx.log.out = getenv("SL_OOM_LOG") ? fdopen(dup(2), "w")
                                       : fopen("/dev/null", "w");
    assert_non_null(ctx.log.out);
    hub_start();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hub_stop();
    assert_int_equal(uv_loop_close(&loop), 0);
    fclose(ctx.log.out);
    return 0;
}

int main(void)
{
    sl_test_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(user_request),
        cmocka_unit_test(control_upgrade),
        cmocka_unit_test(paired_request),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return rc;
}
