/* Shared libraries that only some processes need (libcurl for ACME,
 * libpq for a PostgreSQL store) are opened when first needed instead of
 * being linked: a process that never uses them never maps them, nor the
 * libraries they pull in.
 *
 * Each user keeps a struct of function pointers and a list naming the
 * symbol behind each member (acme/curl_lib.c, hub/pq_lib.c); sl_dl_load
 * fills it all or fails. */
#ifndef SL_CORE_DL_H
#define SL_CORE_DL_H

#include <stddef.h>

struct sl_dl_sym {
    const char *name; /* as the library exports it, e.g. "PQexec" */
    size_t offset;    /* of its function pointer in the table */
};

/* Opens soname with dlopen(RTLD_NOW | RTLD_LOCAL) and stores the address
 * of each of the n symbols at table + syms[i].offset. The library stays
 * open for the life of the process. Each table is filled once, by one
 * thread (its user's pthread_once).
 *
 * Returns 0, or SL_ENOTFOUND when the library or one of the symbols is
 * missing: then nothing is kept open, the table must not be used, and
 * err (cap bytes, may be NULL) gets one line and dlerror()'s words:
 * "cannot load SONAME (install PACKAGE): ..." when the library is not
 * there, "cannot load SONAME (PACKAGE too old?): ..." when a symbol is
 * not. */
int sl_dl_load(const char *soname, const char *package,
               const struct sl_dl_sym *syms, size_t n, void *table, char *err,
               size_t cap);

#endif
