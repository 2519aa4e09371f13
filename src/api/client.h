/* A small blocking HTTP/1.1 client for the CLI (which has no event loop):
 * one request per connection ("Connection: close"), plain TCP or TLS
 * (an "https://" address: the API off loopback), every step bounded by a
 * timeout. Never use it on the libuv loop. */
#ifndef SL_API_CLIENT_H
#define SL_API_CLIENT_H

#include <stddef.h>

#include <jansson.h>

/* Largest response body accepted (SL_ETOOBIG past it). */
#define SL_HTTP_CLIENT_BODY_MAX (16 * 1024 * 1024)
#define SL_HTTP_CLIENT_TIMEOUT_MS 10000

/* Sends method path to addr and waits for the answer.
 * addr: "host:port", "[v6]:port", "http://host:port[/]" or
 *       "https://host:port[/]" (TLS, verified against the system store;
 *       host may be a name; it is resolved with getaddrinfo).
 * path: "/api/proxy/" (with query string if any).
 * token: sent as "Authorization: Bearer <token>" when not NULL.
 * body: sent with Content-Type: application/json when not NULL.
 * timeout_ms: for connect and for the whole exchange; <= 0: default 10 s.
 * On success *status gets the HTTP status and *resp_body a malloc'd,
 * NUL-terminated body (caller frees) of *resp_len bytes (resp_len may be
 * NULL). Returns 0, UV_EINVAL, SL_EPARSE (bad addr or bad response),
 * SL_ETOOBIG (body over SL_HTTP_CLIENT_BODY_MAX), UV_ENOMEM, UV_ETIMEDOUT,
 * or a connect error (UV_ECONNREFUSED, ...). */
int sl_http_client_request(const char *addr, const char *method,
                           const char *path, const char *token,
                           const char *body, int timeout_ms, int *status,
                           char **resp_body, size_t *resp_len);

/* Convenience for JSON APIs: body_json (borrowed, may be NULL) is sent
 * serialized; the answer is parsed into *out (new reference, caller
 * decrefs; NULL when the body is empty). When the status is >= 400 and the
 * answer is {"error": "..."}, that message is copied into err (err may be
 * NULL; errcap bytes), else a generic one ("HTTP 500"). Returns 0 (check
 * *status), SL_EPARSE (answer not JSON) or the errors above; on a
 * transport error err gets a sentence naming addr. */
/* ca_file: the CA (PEM) an https:// API is verified against, NULL: the
 * system store; own_ca: ca_file is the hub's own local CA (from its state
 * directory), so its signature alone names the hub (no host name check). */
int sl_http_client_json(const char *addr, const char *ca_file, int own_ca,
                        const char *method, const char *path,
                        const char *token, json_t *body_json, int *status,
                        json_t **out, char *err, size_t errcap);

#endif
