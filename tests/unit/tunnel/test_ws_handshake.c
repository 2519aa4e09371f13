#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <uv.h>

#include "core/error.h"
#include "core/b64.h"
#include "tunnel/ws_handshake.h"

#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="

static void test_accept_rfc6455(void **state)
{
    char out[SL_WS_ACCEPT_LEN + 1];
    assert_int_equal(sl_ws_accept(SAMPLE_KEY, strlen(SAMPLE_KEY), out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(sl_ws_accept(" " SAMPLE_KEY "\t", 26, out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_true(sl_ws_check_accept(SAMPLE_KEY, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                                   28));
    assert_true(sl_ws_check_accept(SAMPLE_KEY,
                                   " s3pPLMBiTxaQ9kYGzzhZRbK+xOo= ", 30));
    assert_false(sl_ws_check_accept(SAMPLE_KEY, "s3pPLMBiTxaQ9kYGzzhZRbK+xOp=",
                                    28));
    assert_false(sl_ws_check_accept(SAMPLE_KEY, "s3pPLMBiTxaQ9kYGzzhZRbK+xO",
                                    26));
    assert_false(sl_ws_check_accept(SAMPLE_KEY, NULL, 0));
    char big[300];
    memset(big, 'A', sizeof(big));
    assert_int_equal(sl_ws_accept(big, sizeof(big), out), SL_ETOOBIG);
}

static void test_key_new(void **state)
{
    char a[SL_WS_KEY_LEN + 1];
    char b[SL_WS_KEY_LEN + 1];
    unsigned char raw[20];
    assert_int_equal(sl_ws_key_new(a), 0);
    assert_int_equal(sl_ws_key_new(b), 0);
    assert_int_equal(strlen(a), SL_WS_KEY_LEN);
    assert_string_not_equal(a, b);
    assert_int_equal(sl_b64_decode(a, strlen(a), raw, sizeof(raw)), 16);
}

static struct sl_ws_upgrade hdrs(const char *up, const char *conn,
                                 const char *ver, const char *key)
{
    struct sl_ws_upgrade h = {
        up, up ? strlen(up) : 0, conn, conn ? strlen(conn) : 0,
        ver, ver ? strlen(ver) : 0, key, key ? strlen(key) : 0,
    };
    return h;
}

static int check(const char *up, const char *conn, const char *ver,
                 const char *key)
{
    struct sl_ws_upgrade h = hdrs(up, conn, ver, key);
    const char *why = NULL;
    int rc = sl_ws_check_upgrade(&h, &why);
    assert_non_null(why);
    if (rc == 0)
        assert_string_equal(why, "");
    return rc;
}

static void test_check_upgrade(void **state)
{
    assert_int_equal(check("websocket", "Upgrade", "13", SAMPLE_KEY), 0);
    assert_int_equal(check("WebSocket", "keep-alive, UPGRADE", " 13 ",
                           " " SAMPLE_KEY "\t"), 0);
    assert_int_equal(check("h2c, websocket", "close,upgrade", "13",
                           SAMPLE_KEY), 0);
    /* not an upgrade */
    assert_int_equal(check(NULL, "Upgrade", "13", SAMPLE_KEY), SL_ENOTFOUND);
    assert_int_equal(check(NULL, NULL, NULL, NULL), SL_ENOTFOUND);
    /* wrong version: 426 */
    assert_int_equal(check("websocket", "Upgrade", "8", SAMPLE_KEY),
                     SL_EDENIED);
    assert_int_equal(check("websocket", "Upgrade", "13, 8", SAMPLE_KEY),
                     SL_EDENIED);
    /* malformed */
    assert_int_equal(check("h2c", "Upgrade", "13", SAMPLE_KEY), SL_EPARSE);
    assert_int_equal(check("websocket/13", "Upgrade", "13", SAMPLE_KEY),
                     SL_EPARSE);
    assert_int_equal(check("websockets", "Upgrade", "13", SAMPLE_KEY),
                     SL_EPARSE);
    assert_int_equal(check("", "Upgrade", "13", SAMPLE_KEY), SL_EPARSE);
    assert_int_equal(check("websocket", NULL, "13", SAMPLE_KEY), SL_EPARSE);
    assert_int_equal(check("websocket", "keep-alive", "13", SAMPLE_KEY),
                     SL_EPARSE);
    assert_int_equal(check("websocket", "upgrades", "13", SAMPLE_KEY),
                     SL_EPARSE);
    assert_int_equal(check("websocket", "Upgrade", "13", NULL), SL_EPARSE);
    assert_int_equal(check("websocket", "Upgrade", "13", ""), SL_EPARSE);
    assert_int_equal(check("websocket", "Upgrade", "13",
                           "dGhlIHNhbXBsZSBub25jZQ="), SL_EPARSE);
    assert_int_equal(check("websocket", "Upgrade", "13",
                           "dGhlIHNhbXBsZSBub25jZR=="), SL_EPARSE);
    assert_int_equal(check("websocket", "Upgrade", "13",
                           "dGhlIHNhbXBsZSBub25jZQ==,dGhlIHNhbXBsZSBub25jZQ=="),
                     SL_EPARSE);
    assert_int_equal(check("websocket", "Upgrade", "13",
                           "dGhlIHNhbXBsZSBub25jZQ=a"), SL_EPARSE);
    assert_int_equal(check("websocket", "Upgrade", "13",
                           "dGhlIHNhbXBsZSBub25jZ Q="), SL_EPARSE);
    assert_int_equal(check("websocket", "Upgrade", NULL, SAMPLE_KEY),
                     SL_EPARSE);
    assert_int_equal(sl_ws_check_upgrade(NULL, NULL), SL_EPARSE);
    /* Only len bytes are read. */
    struct sl_ws_upgrade h = hdrs("websocketX", "UpgradeX", "13X",
                                  SAMPLE_KEY "X");
    h.upgrade_len--;
    h.connection_len--;
    h.version_len--;
    h.key_len--;
    assert_int_equal(sl_ws_check_upgrade(&h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_rfc6455),
        cmocka_unit_test(test_key_new),
        cmocka_unit_test(test_check_upgrade),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
