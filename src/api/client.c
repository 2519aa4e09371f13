#include "api/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <uv.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/dynbuf.h"
#include "core/error.h"
#include "net/http_head.h"
#include "tls/tls_client.h"

#define HOST_MAX 256
#define REQ_HEAD_MAX 2048

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return UV_ETIMEDOUT;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)(left > INT32_MAX ? INT32_MAX : left));
        if (r > 0)
            return 0;
        if (r == 0)
            return UV_ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int dial(const char *host, const char *port, int64_t deadline,
                int *out)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0)
        return g == EAI_NONAME ? UV_EAI_NONAME : UV_EAI_FAIL;
    int rc = UV_ECONNREFUSED;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family,
                        ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
            errno != EINPROGRESS) {
            rc = -errno;
            close(fd);
            continue;
        }
        rc = wait_fd(fd, POLLOUT, deadline);
        if (rc == 0) {
            int err = 0;
            socklen_t el = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
                err = errno;
            rc = err ? -err : 0;
        }
        if (rc == 0) {
            *out = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

/* The connection: a socket, with TLS on it for an https:// API. */
struct io {
    int fd;
    SSL *ssl;
    struct sl_tls_client *tls;
};

/* Waits for what OpenSSL asked for; 0, or why not. */
static int tls_wait(struct io *io, int r, int64_t deadline)
{
    int e = SSL_get_error(io->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return wait_fd(io->fd, POLLIN, deadline);
    if (e == SSL_ERROR_WANT_WRITE)
        return wait_fd(io->fd, POLLOUT, deadline);
    return e == SSL_ERROR_ZERO_RETURN ? UV_EOF : UV_EPROTO;
}

static int tls_open(struct io *io, const char *host, const char *ca_file,
                    int own_ca, int64_t deadline, char *why, size_t cap)
{
    struct sl_tls_client_opts o = {.ca_file = ca_file, .alpn = "http/1.1"};
    int rc = sl_tls_client_new(&o, &io->tls, why, cap);
    if (rc != 0)
        return rc;
    io->ssl = sl_tls_client_ssl(io->tls, host, NULL);
    if (io->ssl == NULL || !SSL_set_fd(io->ssl, io->fd))
        return UV_ENOMEM;
    if (own_ca) {
        /* The hub's own private CA, from its state directory: whoever it
         * signed is that hub, whatever address the API was reached on. */
        X509_VERIFY_PARAM *p = SSL_get0_param(io->ssl);
        X509_VERIFY_PARAM_set1_host(p, NULL, 0);
        X509_VERIFY_PARAM_set1_ip(p, NULL, 0);
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(io->ssl);
        if (r == 1)
            break;
        rc = tls_wait(io, r, deadline);
        if (rc == UV_EPROTO || rc == UV_EOF) {
            if (sl_tls_client_check(io->tls, io->ssl, why, cap) == 0)
                snprintf(why, cap, "TLS handshake failed");
            return UV_EPROTO;
        }
        if (rc != 0)
            return rc;
    }
    return sl_tls_client_check(io->tls, io->ssl, why, cap) == 0 ? 0
                                                                 : UV_EPROTO;
}

static int io_send(struct io *io, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ERR_clear_error();
        int w = SSL_write(io->ssl, p, (int)n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        int rc = tls_wait(io, w, deadline);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static ssize_t io_recv(struct io *io, char *buf, size_t cap, int64_t deadline)
{
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(io->ssl, buf, (int)cap);
        if (n > 0)
            return n;
        int rc = tls_wait(io, n, deadline);
        if (rc == UV_EOF)
            return 0;
        if (rc != 0)
            return rc;
    }
}

static int send_all(int fd, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc != 0)
                return rc;
            continue;
        }
        return w < 0 ? -errno : UV_EPIPE;
    }
    return 0;
}

struct resp {
    struct sl_dynbuf body;
    int complete;
    int err; /* why on_body stopped the parser */
};

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct resp *r = p->data;
    r->err = sl_dynbuf_append(&r->body, at, n, SL_HTTP_CLIENT_BODY_MAX);
    return r->err != 0 ? -1 : 0;
}

static int on_complete(http_parser *p)
{
    struct resp *r = p->data;
    r->complete = 1;
    return 0;
}

static int request(const char *addr, const char *ca_file, int own_ca,
                   const char *method,
                   const char *path, const char *token, const char *body,
                   int timeout_ms, int *status, char **resp_body,
                   size_t *resp_len, char *why, size_t whycap)
{
    if (addr == NULL || method == NULL || path == NULL || status == NULL ||
        resp_body == NULL)
        return UV_EINVAL;
    *resp_body = NULL;
    if (resp_len)
        *resp_len = 0;
    char host[HOST_MAX], port[8];
    struct io io = {.fd = -1};
    int tls = strncmp(addr, "https://", 8) == 0;
    char plain[HOST_MAX + 16];
    if (tls) {
        snprintf(plain, sizeof(plain), "http://%s", addr + 8);
        addr = plain;
    }
    if (sl_http_split_host_port(addr, host, sizeof(host), port, sizeof(port)) != 0)
        return SL_EPARSE;
    if (tls && strcmp(port, "80") == 0 && strstr(addr + 7, ":80") == NULL)
        snprintf(port, sizeof(port), "443");
    if (timeout_ms <= 0)
        timeout_ms = SL_HTTP_CLIENT_TIMEOUT_MS;
    int64_t deadline = now_ms() + timeout_ms;
    int fd = -1;
    struct resp r = {0};
    size_t blen = body ? strlen(body) : 0;
    char head[REQ_HEAD_MAX];
    int hn = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\n"
                      "Host: %s%s%s:%s\r\n"
                      "User-Agent: sluice-cli\r\n"
                      "Accept: application/json\r\n"
                      "Connection: close\r\n"
                      "%s%s%s"
                      "%s%zu\r\n\r\n",
                      method, path, strchr(host, ':') ? "[" : "", host,
                      strchr(host, ':') ? "]" : "", port,
                      token ? "Authorization: Bearer " : "",
                      token ? token : "", token ? "\r\n" : "",
                      body ? "Content-Type: application/json\r\n"
                             "Content-Length: "
                           : "Content-Length: ",
                      blen);
    if (hn < 0 || (size_t)hn >= sizeof(head))
        return SL_ETOOBIG;
    int rc = dial(host, port, deadline, &fd);
    if (rc != 0)
        goto out;
    io.fd = fd;
    if (tls && (rc = tls_open(&io, host, ca_file, own_ca, deadline, why,
                              whycap)) != 0)
        goto out;
    if ((rc = tls ? io_send(&io, head, (size_t)hn, deadline)
                  : send_all(fd, head, (size_t)hn, deadline)) != 0)
        goto out;
    if (blen > 0 && (rc = tls ? io_send(&io, body, blen, deadline)
                              : send_all(fd, body, blen, deadline)) != 0)
        goto out;

    http_parser parser;
    http_parser_settings settings;
    memset(&settings, 0, sizeof(settings));
    settings.on_body = on_body;
    settings.on_message_complete = on_complete;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &r;
    char buf[16384];
    while (!r.complete) {
        ssize_t n = tls ? io_recv(&io, buf, sizeof(buf), deadline)
                        : recv(fd, buf, sizeof(buf), 0);
        if (tls && n < 0) {
            rc = (int)n;
            goto out;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if ((rc = wait_fd(fd, POLLIN, deadline)) != 0)
                goto out;
            continue;
        }
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        /* n == 0 tells the parser about EOF (ends a body without
         * length, or is an error mid-message). */
        size_t done = http_parser_execute(&parser, &settings, buf, (size_t)n);
        if (r.err != 0) {
            rc = r.err;
            goto out;
        }
        if (HTTP_PARSER_ERRNO(&parser) != HPE_OK || done != (size_t)n) {
            rc = SL_EPARSE;
            goto out;
        }
        if (n == 0)
            break;
    }
    if (!r.complete) {
        rc = SL_EPARSE;
        goto out;
    }
    *status = (int)parser.status_code;
    size_t len = r.body.len;
    if ((*resp_body = sl_dynbuf_take(&r.body)) == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    if (resp_len)
        *resp_len = len;
    rc = 0;
out:
    SSL_free(io.ssl);
    sl_tls_client_free(io.tls);
    if (fd >= 0)
        close(fd);
    sl_dynbuf_free(&r.body);
    return rc;
}

int sl_http_client_request(const char *addr, const char *method,
                           const char *path, const char *token,
                           const char *body, int timeout_ms, int *status,
                           char **resp_body, size_t *resp_len)
{
    char why[8];
    return request(addr, NULL, 0, method, path, token, body, timeout_ms,
                   status, resp_body, resp_len, why, sizeof(why));
}

int sl_http_client_json(const char *addr, const char *ca_file, int own_ca,
                        const char *method, const char *path,
                        const char *token, json_t *body_json, int *status,
                        json_t **out, char *err, size_t errcap)
{
    if (out == NULL || status == NULL)
        return UV_EINVAL;
    *out = NULL;
    if (err && errcap)
        err[0] = '\0';
    char *body = NULL;
    if (body_json != NULL &&
        (body = json_dumps(body_json, JSON_COMPACT)) == NULL)
        return UV_ENOMEM;
    char *resp = NULL;
    size_t len = 0;
    char why[256] = "";
    int rc = request(addr, ca_file, own_ca, method, path, token, body, 0,
                     status, &resp, &len, why, sizeof(why));
    free(body);
    if (rc != 0) {
        if (err && errcap)
            snprintf(err, errcap, "cannot reach the API at %s: %s", addr,
                     why[0] ? why : sl_strerror(rc));
        return rc;
    }
    json_t *j = NULL;
    if (len > 0) {
        json_error_t je;
        j = json_loadb(resp, len, 0, &je);
    }
    if (len > 0 && j == NULL) {
        if (err && errcap)
            snprintf(err, errcap, "the API at %s answered HTTP %d, not JSON",
                     addr, *status);
        free(resp);
        return SL_EPARSE;
    }
    free(resp);
    if (*status >= 400 && err && errcap) {
        const char *m = json_string_value(json_object_get(j, "error"));
        if (m != NULL)
            snprintf(err, errcap, "%s (HTTP %d)", m, *status);
        else
            snprintf(err, errcap, "HTTP %d", *status);
    }
    *out = j;
    return 0;
}
