#include "core/dl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

static void say(char *err, size_t cap, const char *soname, const char *why,
                const char *dl)
{
    if (err != NULL && cap > 0)
        snprintf(err, cap, "cannot load %s (%s): %s", soname, why,
                 dl != NULL ? dl : "unknown error");
}

int sl_dl_load(const char *soname, const char *package,
               const struct sl_dl_sym *syms, size_t n, void *table, char *err,
               size_t cap)
{
    char why[96];
    snprintf(why, sizeof(why), "install %s", package);
    /* RTLD_NOW: a library missing one of its own dependencies fails here,
     * at start, not at its first call. RTLD_LOCAL: its symbols do not
     * take part in later lookups. */
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        say(err, cap, soname, why, dlerror());
        return SL_ENOTFOUND;
    }
    for (size_t i = 0; i < n; i++) {
        (void)dlerror();
        void *f = dlsym(h, syms[i].name);
        if (f == NULL) {
            /* Installed but without a function we call: too old. */
            snprintf(why, sizeof(why), "%s too old?", package);
            say(err, cap, soname, why, dlerror());
            dlclose(h);
            return SL_ENOTFOUND;
        }
        /* POSIX: a function's address from dlsym fits a function
         * pointer. */
        memcpy((char *)table + syms[i].offset, &f, sizeof(f));
    }
    return 0;
}
