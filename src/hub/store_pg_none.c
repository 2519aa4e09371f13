/* Built without libpq: a postgres:// store is refused at open. */
#include "hub/store_ops.h"

#include "core/error.h"

int sl_store_pg_open(const char *conninfo, struct sl_log *log,
                     struct sl_store **out)
{
    (void)conninfo;
    *out = NULL;
    if (log)
        sl_error(log, "store: this sluice was built without PostgreSQL "
                      "support (libpq); use --store sqlite:PATH");
    return SL_ECONFIG;
}
