#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/dynbuf.h"
#include "core/error.h"

static void test_append_and_take(void **state)
{
    (void)state;
    struct sl_dynbuf b = {0};
    assert_int_equal(sl_dynbuf_append(&b, "abc", 3, 10), 0);
    assert_int_equal(sl_dynbuf_append(&b, "", 0, 10), 0);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    /* up to max exactly, then refused without change */
    assert_int_equal(sl_dynbuf_append(&b, "defghij", 7, 10), 0);
    assert_string_equal(b.data, "abcdefghij");
    assert_int_equal(sl_dynbuf_append(&b, "k", 1, 10), SL_ETOOBIG);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "abcdefghij");
    /* the buffer never grows past what max needs */
    assert_true(b.cap <= 11);
    char *s = sl_dynbuf_take(&b);
    assert_string_equal(s, "abcdefghij");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(s);
    /* an empty buffer hands over "" */
    s = sl_dynbuf_take(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
}

static void test_growth_and_limits(void **state)
{
    (void)state;
    struct sl_dynbuf b = {0};
    char chunk[1000];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 100; i++)
        assert_int_equal(sl_dynbuf_append(&b, chunk, sizeof(chunk), 100000),
                         0);
    assert_int_equal(b.len, 100000);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(b.cap, 100001);
    assert_int_equal(sl_dynbuf_append(&b, chunk, 1, 100000), SL_ETOOBIG);
    /* n alone over max, and a max whose + 1 or doubling would wrap */
    assert_int_equal(sl_dynbuf_append(&b, chunk, 200000, 100000), SL_ETOOBIG);
    assert_int_equal(sl_dynbuf_append(&b, chunk, 1, SIZE_MAX), UV_EINVAL);
    sl_dynbuf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    sl_dynbuf_free(&b); /* twice is fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_take),
        cmocka_unit_test(test_growth_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
