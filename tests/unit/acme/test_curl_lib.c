/* acme/curl_lib.c: every function ACME calls is found in the libcurl the
 * machine has, under the name the table gives it, and works. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "acme/curl_lib.h"

static void test_loads_every_function(void **state)
{
    (void)state;
    char err[512] = "";
    assert_int_equal(sl_curl_load(err, sizeof(err)), 0);
    assert_string_equal(err, "");
    const struct sl_curl_lib *cu = sl_curl();
    assert_non_null(cu);
    /* Every member, whatever its type, is set. */
    void *const *p = (void *const *)(const void *)cu;
    for (size_t i = 0; i < sizeof(*cu) / sizeof(void *); i++)
        assert_non_null(p[i]);
    /* Once per process: the same table again. */
    assert_int_equal(sl_curl_load(NULL, 0), 0);
    assert_ptr_equal(sl_curl(), cu);
}

static void test_calls_through_the_table(void **state)
{
    (void)state;
    const struct sl_curl_lib *cu = sl_curl();
    assert_non_null(cu);
    assert_string_equal(cu->easy_strerror(CURLE_OK), "No error");
    CURL *h = cu->easy_init();
    assert_non_null(h);
    /* The variadic setopt passes its argument through. */
    assert_int_equal(cu->easy_setopt(h, CURLOPT_TIMEOUT_MS, 1000L), CURLE_OK);
    assert_int_equal(cu->easy_setopt(h, CURLOPT_URL, "http://127.0.0.1/"),
                     CURLE_OK);
    struct curl_slist *l = cu->slist_append(NULL, "Accept: x");
    assert_non_null(l);
    cu->slist_free_all(l);
    cu->easy_reset(h);
    cu->easy_cleanup(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_every_function),
        cmocka_unit_test(test_calls_through_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
