/* stream/srctab: SipHash-2-4 against the reference vectors, and the
 * per-source counters behind max_connections_per_source (TCP) and
 * max_sessions_per_prefix (UDP). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "core/error.h"
#include "stream/srctab.h"

static struct sockaddr_storage addr(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* From the SipHash paper's appendix and the reference vectors.h: key
 * 00..0f, messages 00..(n-1). */
static void test_siphash_vectors(void **state)
{
    uint8_t key[16], msg[64];
    (void)state;
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    assert_true(sl_siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
    assert_true(sl_siphash24(key, msg, 1) == 0x74f839c593dc67fdULL);
    assert_true(sl_siphash24(key, msg, 8) == 0x93f5f5799a932462ULL);
    assert_true(sl_siphash24(key, msg, 15) == 0xa129ca6149be45e5ULL);
    assert_true(sl_siphash24(key, msg, 63) == 0x958a324ceb064572ULL);
}

static void test_keys_differ(void **state)
{
    uint8_t a[16], b[16];
    (void)state;
    assert_int_equal(sl_srctab_random_key(a), 0);
    assert_int_equal(sl_srctab_random_key(b), 0);
    assert_memory_not_equal(a, b, 16);
    /* the same input hashes apart under two keys: nobody can precompute
     * colliding sources */
    const char m[] = "192.0.2.1:53";
    assert_true(sl_siphash24(a, m, sizeof(m)) != sl_siphash24(b, m, sizeof(m)));
}

static void test_per_address_cap(void **state)
{
    struct sl_srctab t;
    (void)state;
    assert_int_equal(sl_srctab_init(&t, 32, 64, 10), 0);
    struct sockaddr_storage a1 = addr("192.0.2.1", 1000);
    struct sockaddr_storage a1b = addr("192.0.2.1", 2000); /* same host */
    struct sockaddr_storage a2 = addr("192.0.2.2", 1000);
    assert_int_equal(sl_srctab_take(&t, SA(a1), 2), 0);
    assert_int_equal(sl_srctab_take(&t, SA(a1b), 2), 0);
    assert_int_equal(sl_srctab_take(&t, SA(a1), 2), SL_ELIMIT);
    assert_int_equal(sl_srctab_count(&t, SA(a1)), 2);
    assert_int_equal(sl_srctab_take(&t, SA(a2), 2), 0);
    assert_int_equal(t.nentries, 2);
    sl_srctab_release(&t, SA(a1));
    assert_int_equal(sl_srctab_take(&t, SA(a1), 2), 0);
    sl_srctab_release(&t, SA(a1));
    sl_srctab_release(&t, SA(a1));
    sl_srctab_release(&t, SA(a2));
    assert_int_equal(t.nentries, 0); /* empty sources leave no entry */
    sl_srctab_release(&t, SA(a2));   /* unknown: nothing happens */
    assert_int_equal(sl_srctab_count(&t, SA(a2)), 0);
    sl_srctab_free(&t);
}

static void test_prefixes(void **state)
{
    struct sl_srctab t;
    (void)state;
    assert_int_equal(sl_srctab_init(&t, 24, 64, 10), 0);
    struct sockaddr_storage in24[] = {addr("198.51.100.1", 1),
                                      addr("198.51.100.200", 1),
                                      addr("198.51.100.255", 9)};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(sl_srctab_take(&t, SA(in24[i]), 3), 0);
    struct sockaddr_storage more = addr("198.51.100.7", 7);
    assert_int_equal(sl_srctab_take(&t, SA(more), 3), SL_ELIMIT);
    struct sockaddr_storage next24 = addr("198.51.101.7", 7);
    assert_int_equal(sl_srctab_take(&t, SA(next24), 3), 0);

    /* IPv6: one /64 is one source, the next /64 another */
    struct sockaddr_storage v6a = addr("2001:db8:0:1::1", 1);
    struct sockaddr_storage v6b = addr("2001:db8:0:1:ffff::9", 1);
    struct sockaddr_storage v6c = addr("2001:db8:0:2::1", 1);
    assert_int_equal(sl_srctab_take(&t, SA(v6a), 1), 0);
    assert_int_equal(sl_srctab_take(&t, SA(v6b), 1), SL_ELIMIT);
    assert_int_equal(sl_srctab_take(&t, SA(v6c), 1), 0);
    /* max 0 is no cap */
    for (int i = 0; i < 10; i++)
        assert_int_equal(sl_srctab_take(&t, SA(v6b), 0), 0);
    assert_int_equal(sl_srctab_count(&t, SA(v6a)), 11);

    /* other families are not counted and pass */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_int_equal(sl_srctab_take(&t, (struct sockaddr *)&un, 1), 0);
    assert_int_equal(sl_srctab_take(&t, NULL, 1), 0);
    sl_srctab_release(&t, NULL);
    sl_srctab_free(&t); /* frees what is still counted */
    sl_srctab_free(&t); /* and twice is harmless */
}

/* Many sources spread over buckets and back: the table stays consistent
 * through growth of chains (ASan watches the frees). */
static void test_many_sources(void **state)
{
    struct sl_srctab t;
    (void)state;
    assert_int_equal(sl_srctab_init(&t, 32, 64, 64), 0);
    char ip[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", i >> 16, (i >> 8) & 255,
                 i & 255);
        struct sockaddr_storage a = addr(ip, 1);
        assert_int_equal(sl_srctab_take(&t, SA(a), 1), 0);
    }
    assert_int_equal(t.nentries, 2000);
    for (int i = 0; i < 2000; i += 2) {
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", i >> 16, (i >> 8) & 255,
                 i & 255);
        struct sockaddr_storage a = addr(ip, 1);
        sl_srctab_release(&t, SA(a));
    }
    assert_int_equal(t.nentries, 1000);
    sl_srctab_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),
        cmocka_unit_test(test_keys_differ),
        cmocka_unit_test(test_per_address_cap),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_many_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
