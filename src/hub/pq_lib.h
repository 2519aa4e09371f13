/* libpq for the PostgreSQL store (store_pg.c), opened when a hub opens a
 * postgres:// store rather than linked: libpq and what it pulls in
 * (Kerberos, LDAP, SASL, ...) are resident memory that a hub on SQLite,
 * or a node, should not carry. Compiled against libpq-fe.h, so each
 * member has the type of the function it points to. */
#ifndef SL_HUB_PQ_LIB_H
#define SL_HUB_PQ_LIB_H

#include <stddef.h>

#include <libpq-fe.h>

/* The functions of libpq.so.5 that sluice calls, each named as in libpq
 * without its "PQ" prefix. */
struct sl_pq_lib {
    __typeof__(PQconnectdbParams) *connectdbParams;
    __typeof__(PQstatus) *status;
    __typeof__(PQerrorMessage) *errorMessage;
    __typeof__(PQfinish) *finish;
    __typeof__(PQexec) *exec;
    __typeof__(PQexecParams) *execParams;
    __typeof__(PQresultStatus) *resultStatus;
    __typeof__(PQresultErrorField) *resultErrorField;
    __typeof__(PQresultErrorMessage) *resultErrorMessage;
    __typeof__(PQntuples) *ntuples;
    __typeof__(PQgetvalue) *getvalue;
    __typeof__(PQgetisnull) *getisnull;
    __typeof__(PQclear) *clear;
};

/* Opens libpq.so.5, once per process: the first call does it (from any
 * thread), later ones return its result. Returns 0, or SL_ENOTFOUND
 * (libpq or one of these functions is missing) with one line in err
 * (cap bytes; may be NULL), e.g. "cannot load libpq.so.5 (install
 * libpq5): ...". */
int sl_pq_load(char *err, size_t cap);

/* The functions (loaded by the first call, as sl_pq_load), or NULL when they
 * cannot be. */
const struct sl_pq_lib *sl_pq(void);

#endif
