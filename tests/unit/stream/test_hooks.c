/* stream/hooks: chains and the built-in ACL, limit and counter hooks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/error.h"
#include "net/addr.h"
#include "proto/acl.h"
#include "stream/hooks.h"

static int calls;

static int admit_fn(void *arg, const struct sl_hook_stream *st,
                    const char **reason)
{
    (void)arg;
    (void)st;
    (void)reason;
    calls++;
    return 0;
}

static int refuse_fn(void *arg, const struct sl_hook_stream *st,
                     const char **reason)
{
    (void)st;
    calls++;
    *reason = arg;
    return SL_EDENIED;
}

static int positive_fn(void *arg, const struct sl_hook_stream *st,
                       const char **reason)
{
    (void)arg;
    (void)st;
    (void)reason;
    calls++;
    return 1; /* not a proper code: the chain turns it into SL_EDENIED */
}

static int stop_read(void *arg, const struct sl_hook_stream *st, size_t n,
                     enum sl_hook_dir dir)
{
    (void)arg;
    (void)st;
    (void)dir;
    calls++;
    return n > 100 ? SL_ELIMIT : 0;
}

static void on_close_fn(void *arg, const struct sl_hook_stream *st)
{
    (void)st;
    (*(int *)arg)++;
}

static void test_empty_chain_admits(void **state)
{
    (void)state;
    struct sl_hooks h = {0};
    struct sl_hook_stream st = {.route = "r"};
    const char *why = "x";
    assert_int_equal(sl_hooks_pre_dial(&h, &st, &why), 0);
    assert_string_equal(why, "");
    assert_int_equal(sl_hooks_on_read(&h, &st, 10, SL_HOOK_UP), 0);
    sl_hooks_on_close(&h, &st);
}

static void test_first_refusal_wins(void **state)
{
    (void)state;
    struct sl_hooks h = {0};
    struct sl_hook_stream st = {.route = "r"};
    const char *why;
    calls = 0;
    assert_int_equal(sl_hooks_add_pre_dial(&h, admit_fn, NULL), 0);
    assert_int_equal(sl_hooks_add_pre_dial(&h, refuse_fn, "first"), 0);
    assert_int_equal(sl_hooks_add_pre_dial(&h, refuse_fn, "second"), 0);
    assert_int_equal(sl_hooks_pre_dial(&h, &st, &why), SL_EDENIED);
    assert_string_equal(why, "first");
    assert_int_equal(calls, 2);

    struct sl_hooks p = {0};
    sl_hooks_add_pre_dial(&p, positive_fn, NULL);
    assert_int_equal(sl_hooks_pre_dial(&p, &st, &why), SL_EDENIED);
    assert_string_equal(why, "refused");
}

static void test_chain_full(void **state)
{
    (void)state;
    struct sl_hooks h = {0};
    for (int i = 0; i < SL_HOOKS_MAX; i++) {
        assert_int_equal(sl_hooks_add_pre_dial(&h, admit_fn, NULL), 0);
        assert_int_equal(sl_hooks_add_on_read(&h, stop_read, NULL), 0);
        assert_int_equal(sl_hooks_add_on_close(&h, on_close_fn, NULL), 0);
    }
    assert_int_equal(sl_hooks_add_pre_dial(&h, admit_fn, NULL), SL_ELIMIT);
    assert_int_equal(sl_hooks_add_on_read(&h, stop_read, NULL), SL_ELIMIT);
    assert_int_equal(sl_hooks_add_on_close(&h, on_close_fn, NULL), SL_ELIMIT);
}

static void test_on_read_and_close(void **state)
{
    (void)state;
    struct sl_hooks h = {0};
    struct sl_stream_stats stats = {0};
    struct sl_hook_stream st = {.route = "r"};
    int closed = 0;
    sl_hooks_add_on_read(&h, sl_hook_count_bytes, &stats);
    sl_hooks_add_on_read(&h, stop_read, NULL);
    sl_hooks_add_on_close(&h, on_close_fn, &closed);
    sl_hooks_add_on_close(&h, on_close_fn, &closed);
    assert_int_equal(sl_hooks_on_read(&h, &st, 10, SL_HOOK_UP), 0);
    assert_int_equal(sl_hooks_on_read(&h, &st, 20, SL_HOOK_DOWN), 0);
    assert_int_equal(sl_hooks_on_read(&h, &st, 30, SL_HOOK_DOWN), 0);
    assert_int_equal(stats.bytes_in, 10);
    assert_int_equal(stats.bytes_out, 50);
    /* the counter runs first, so the refused chunk is counted */
    assert_int_equal(sl_hooks_on_read(&h, &st, 200, SL_HOOK_UP), SL_ELIMIT);
    assert_int_equal(stats.bytes_in, 210);
    sl_hooks_on_close(&h, &st);
    assert_int_equal(closed, 2);
}

static void test_acl_hook(void **state)
{
    (void)state;
    struct sl_acl *acl = sl_acl_new();
    assert_non_null(acl);
    assert_int_equal(sl_acl_add(acl, 1, "cidr:10.0.0.0/8", 0, NULL, 0), 0);
    assert_int_equal(sl_acl_add(acl, 0, "ip:10.0.0.7", 0, NULL, 0), 0);
    struct sl_hooks h = {0};
    sl_hooks_add_pre_dial(&h, sl_hook_acl, acl);

    struct sockaddr_storage a;
    struct sl_hook_stream st = {.route = "r", .client = (struct sockaddr *)&a};
    const char *why;
    sl_addr_parse_ip("10.1.2.3", 5, &a);
    assert_int_equal(sl_hooks_pre_dial(&h, &st, &why), 0);
    sl_addr_parse_ip("10.0.0.7", 5, &a);
    assert_int_equal(sl_hooks_pre_dial(&h, &st, &why), SL_EDENIED);
    assert_string_equal(why, "acl");
    sl_addr_parse_ip("192.168.1.1", 5, &a);
    assert_int_equal(sl_hooks_pre_dial(&h, &st, &why), SL_EDENIED);
    sl_addr_parse_ip("::ffff:10.9.9.9", 5, &a);
    assert_int_equal(sl_hooks_pre_dial(&h, &st, &why), 0);

    /* a NULL ACL allows everyone */
    assert_int_equal(sl_hook_acl(NULL, &st, &why), 0);
    sl_acl_free(acl);
}

static void test_limit_hook(void **state)
{
    (void)state;
    uint64_t active = 0;
    struct sl_hook_limit lim = {.max = 2, .active = &active};
    struct sl_hook_stream tcp = {.route = "r", .udp = 0};
    struct sl_hook_stream udp = {.route = "r", .udp = 1};
    const char *why = "";
    assert_int_equal(sl_hook_limit(&lim, &tcp, &why), 0);
    active = 1;
    assert_int_equal(sl_hook_limit(&lim, &tcp, &why), 0);
    active = 2;
    assert_int_equal(sl_hook_limit(&lim, &tcp, &why), SL_ELIMIT);
    assert_string_equal(why, "connection limit");
    assert_int_equal(sl_hook_limit(&lim, &udp, &why), SL_ELIMIT);
    assert_string_equal(why, "session limit");
    lim.max = 0; /* unlimited */
    active = 1000000;
    assert_int_equal(sl_hook_limit(&lim, &tcp, &why), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_chain_admits),
        cmocka_unit_test(test_first_refusal_wins),
        cmocka_unit_test(test_chain_full),
        cmocka_unit_test(test_on_read_and_close),
        cmocka_unit_test(test_acl_hook),
        cmocka_unit_test(test_limit_hook),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
