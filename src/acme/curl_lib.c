#include "acme/curl_lib.h"

#include <pthread.h>
#include <stdio.h>

#include <uv.h>

#include "core/dl.h"
#include "core/error.h"

#define SYM(member) {"curl_" #member, offsetof(struct sl_curl_lib, member)}

static const struct sl_dl_sym syms[] = {
    SYM(global_init),
    SYM(easy_init),
    SYM(easy_setopt),
    SYM(easy_perform),
    SYM(easy_getinfo),
    SYM(easy_reset),
    SYM(easy_cleanup),
    SYM(easy_strerror),
    SYM(slist_append),
    SYM(slist_free_all),
};

/* Written once, under load_once; read-only after. */
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct sl_curl_lib lib;
static int load_rc = SL_ENOTFOUND;
static char load_err[512];

static void load(void)
{
    size_t n = sizeof(syms) / sizeof(syms[0]);
    load_rc = sl_dl_load("libcurl.so.4", "libcurl4", syms, n, &lib, load_err,
                         sizeof(load_err));
    if (load_rc != 0)
        return;
    /* Not safe to race, hence here, under the once. */
    CURLcode rc = lib.global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(load_err, sizeof(load_err),
                 "libcurl.so.4: curl_global_init failed: %s",
                 lib.easy_strerror(rc));
        load_rc = UV_ENOMEM;
    }
}

int sl_curl_load(char *err, size_t cap)
{
    (void)pthread_once(&load_once, load);
    if (load_rc != 0 && err != NULL && cap > 0)
        snprintf(err, cap, "%s", load_err);
    return load_rc;
}

const struct sl_curl_lib *sl_curl(void)
{
    return sl_curl_load(NULL, 0) == 0 ? &lib : NULL;
}
