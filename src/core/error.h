/* Error codes: 0 on success, a negative value on failure (libuv's rule).
 * Values in the SL_E range are sluice's own; any other negative value is a
 * libuv/errno code and sl_strerror() hands it to uv_strerror(). */
#ifndef SL_ERROR_H
#define SL_ERROR_H

#define SL_EPARSE      (-30001) /* malformed input */
#define SL_EINCOMPLETE (-30002) /* need more bytes; not an error yet */
#define SL_ETOOBIG     (-30003) /* input over its limit */
#define SL_EDENIED     (-30004) /* refused by policy (ACL, limit, auth) */
#define SL_ECONFIG     (-30005) /* invalid configuration */
#define SL_ENOTFOUND   (-30006) /* no such object */
#define SL_EEXIST      (-30007) /* object exists already */
#define SL_ELIMIT      (-30008) /* quota or count limit reached */
#define SL_EAUTH       (-30009) /* credentials rejected */
#define SL_ESTATE      (-30010) /* storage failed */

/* Returns a static string; never NULL. */
const char *sl_strerror(int err);

#endif
