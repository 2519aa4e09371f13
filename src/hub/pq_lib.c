#include "hub/pq_lib.h"

#include <pthread.h>
#include <stdio.h>

#include "core/dl.h"
#include "core/error.h"

#define SYM(member) {"PQ" #member, offsetof(struct sl_pq_lib, member)}

static const struct sl_dl_sym syms[] = {
    SYM(connectdbParams),
    SYM(status),
    SYM(errorMessage),
    SYM(finish),
    SYM(exec),
    SYM(execParams),
    SYM(resultStatus),
    SYM(resultErrorField),
    SYM(resultErrorMessage),
    SYM(ntuples),
    SYM(getvalue),
    SYM(getisnull),
    SYM(clear),
};

/* Written once, under load_once; read-only after. */
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct sl_pq_lib lib;
static int load_rc = SL_ENOTFOUND;
static char load_err[512];

static void load(void)
{
    size_t n = sizeof(syms) / sizeof(syms[0]);
    load_rc = sl_dl_load("libpq.so.5", "libpq5", syms, n, &lib, load_err,
                         sizeof(load_err));
}

int sl_pq_load(char *err, size_t cap)
{
    (void)pthread_once(&load_once, load);
    if (load_rc != 0 && err != NULL && cap > 0)
        snprintf(err, cap, "%s", load_err);
    return load_rc;
}

const struct sl_pq_lib *sl_pq(void)
{
    return sl_pq_load(NULL, 0) == 0 ? &lib : NULL;
}
