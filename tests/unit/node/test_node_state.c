#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "node/node_state.h"

static void fill(struct sl_node_bridge_rec *r, const char *id, int port)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->identity, sizeof(r->identity), "%s", id);
    snprintf(r->upstream, sizeof(r->upstream), "http://127.0.0.1:%d", port);
    snprintf(r->hub, sizeof(r->hub), "http://127.0.0.1:8080");
    snprintf(r->username, sizeof(r->username), "abcdef");
    snprintf(r->password, sizeof(r->password), "p\"ss\\word");
    r->created_at = 1700000000000;
    r->connected_at = 1700000001000;
}

static void round_trip(void **state)
{
    (void)state;
    struct sl_node_bridge_rec in[2], out[4];
    fill(&in[0], "ab1234567890", 3000);
    fill(&in[1], "", 3001);
    in[1].disconnected = 1;
    snprintf(in[1].token, sizeof(in[1].token), "tok");
    char *text = sl_node_state_encode(in, 2);
    assert_non_null(text);
    size_t n = 9, skipped = 9;
    assert_int_equal(sl_node_state_decode(text, strlen(text), out, 4, &n,
                                          &skipped), 0);
    assert_int_equal(n, 2);
    assert_int_equal(skipped, 0);
    assert_memory_equal(&in[0], &out[0], sizeof(in[0]));
    assert_memory_equal(&in[1], &out[1], sizeof(in[1]));
    /* capacity bound: extras are skipped, not overflowed */
    assert_int_equal(sl_node_state_decode(text, strlen(text), out, 1, &n,
                                          &skipped), 0);
    assert_int_equal(n, 1);
    assert_int_equal(skipped, 1);
    free(text);
}

static void decode_bad(void **state)
{
    (void)state;
    struct sl_node_bridge_rec out[4];
    size_t n, skipped;
    assert_int_equal(sl_node_state_decode("nope", 4, out, 4, &n, NULL),
                     SL_EPARSE);
    assert_int_equal(sl_node_state_decode("[]", 2, out, 4, &n, NULL),
                     SL_EPARSE);
    const char *t = "{\"bridges\": [1, {\"upstream\": \"http://x\","
                    "\"hub\": \"http://h:1\"}, {\"identity\": \"AB1234567890\","
                    "\"upstream\": \"http://x:1\", \"hub\": \"http://h:1\"},"
                    "{\"upstream\": \"http://x:1\", \"hub\": \"http://h:1\"}]}";
    assert_int_equal(sl_node_state_decode(t, strlen(t), out, 4, &n, &skipped),
                     0);
    assert_int_equal(n, 1);
    assert_int_equal(skipped, 3);
    assert_string_equal(out[0].upstream, "http://x:1");
    assert_string_equal(out[0].identity, "");
}

static void backoff(void **state)
{
    (void)state;
    assert_int_equal(sl_node_backoff_ms(0, 1.0), 2000);
    assert_int_equal(sl_node_backoff_ms(1, 1.0), 4000);
    assert_int_equal(sl_node_backoff_ms(4, 1.0), 32000);
    assert_int_equal(sl_node_backoff_ms(5, 1.0), 60000);
    assert_int_equal(sl_node_backoff_ms(1000, 1.0), 60000);
    /* never under 1 s (DESIGN: 1 s to 60 s) */
    assert_int_equal(sl_node_backoff_ms(0, 0.5), 1000);
    assert_int_equal(sl_node_backoff_ms(0, 0.1), 1000);
    assert_int_equal(sl_node_backoff_ms(0, 7.0), 2000);
    assert_int_equal(sl_node_backoff_ms(6, 0.5), 30000);
    for (unsigned a = 0; a < 40; a++) {
        assert_true(sl_node_backoff_ms(a, 0.5) >= 1000);
        assert_true(sl_node_backoff_ms(a, 1.0) <= 60000);
    }
    for (int i = 0; i < 1000; i++) {
        double f = sl_node_backoff_jitter();
        assert_true(f >= 0.5 && f <= 1.0);
    }
}

struct save_ctx {
    int done;
};

static void on_idle(void *arg)
{
    ((struct save_ctx *)arg)->done++;
}

static void saver_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/sl_node_state_XXXXXX";
    assert_non_null(mkdtemp(dir));
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct sl_node_saver s;
    assert_int_equal(sl_node_saver_init(&s, &loop, dir, SL_NODE_STATE_FILE),
                     0);
    struct sl_node_bridge_rec in[3], out[4];
    fill(&in[0], "ab1234567890", 1);
    fill(&in[1], "cd1234567890", 2);
    fill(&in[2], "ef1234567890", 3);
    /* three saves in a row: coalesced, the last one wins */
    sl_node_saver_save(&s, sl_node_state_encode(in, 1));
    sl_node_saver_save(&s, sl_node_state_encode(in, 2));
    sl_node_saver_save(&s, sl_node_state_encode(in, 3));
    struct save_ctx sc = {0};
    sl_node_saver_flush(&s, on_idle, &sc);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(sc.done, 1);
    assert_int_equal(s.last_error, 0);
    size_t n;
    assert_int_equal(sl_node_state_load(dir, out, 4, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_string_equal(out[2].identity, "ef1234567890");

    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, SL_NODE_STATE_FILE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    sl_node_saver_free(&s);
    assert_int_equal(uv_loop_close(&loop), 0);
    unlink(path);
    rmdir(dir);

    /* a missing file is an empty state */
    assert_int_equal(sl_node_state_load("/nonexistent-dir-xyz", out, 4, &n,
                                        NULL), 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(decode_bad),
        cmocka_unit_test(backoff),
        cmocka_unit_test(saver_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
