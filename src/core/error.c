#include "core/error.h"

#include <uv.h>

const char *sl_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case SL_EPARSE: return "malformed input";
    case SL_EINCOMPLETE: return "incomplete input";
    case SL_ETOOBIG: return "input too large";
    case SL_EDENIED: return "denied by policy";
    case SL_ECONFIG: return "invalid configuration";
    case SL_ENOTFOUND: return "not found";
    case SL_EEXIST: return "already exists";
    case SL_ELIMIT: return "limit reached";
    case SL_EAUTH: return "authentication failed";
    case SL_ESTATE: return "state store failed";
    default: return uv_strerror(err);
    }
}
