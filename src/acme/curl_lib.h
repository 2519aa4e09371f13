/* libcurl for ACME's HTTP client (acme_http.c), opened when a hub starts
 * ACME rather than linked: libcurl and what it pulls in (GnuTLS, Kerberos,
 * LDAP, SSH, ...) are about 4 MB of resident memory that no other process
 * should carry. Compiled against curl/curl.h, so each member has the type
 * of the function it points to. */
#ifndef SL_ACME_CURL_LIB_H
#define SL_ACME_CURL_LIB_H

#include <stddef.h>

#include <curl/curl.h>

/* The functions of libcurl.so.4 that sluice calls, each named as in curl
 * without its "curl_" prefix. */
struct sl_curl_lib {
    __typeof__(curl_global_init) *global_init;
    __typeof__(curl_easy_init) *easy_init;
    __typeof__(curl_easy_setopt) *easy_setopt;
    __typeof__(curl_easy_perform) *easy_perform;
    __typeof__(curl_easy_getinfo) *easy_getinfo;
    __typeof__(curl_easy_reset) *easy_reset;
    __typeof__(curl_easy_cleanup) *easy_cleanup;
    __typeof__(curl_easy_strerror) *easy_strerror;
    __typeof__(curl_slist_append) *slist_append;
    __typeof__(curl_slist_free_all) *slist_free_all;
};

/* Opens libcurl.so.4 and runs curl_global_init, once per process: the
 * first call does it (from any thread), later ones return its result.
 * Returns 0, SL_ENOTFOUND (libcurl or one of these functions is missing)
 * or UV_ENOMEM (curl_global_init failed), with one line in err (cap
 * bytes; may be NULL), e.g. "cannot load libcurl.so.4 (install
 * libcurl4): ...". */
int sl_curl_load(char *err, size_t cap);

/* The functions (loaded by the first call, as sl_curl_load), or NULL when they
 * cannot be. */
const struct sl_curl_lib *sl_curl(void);

#endif
