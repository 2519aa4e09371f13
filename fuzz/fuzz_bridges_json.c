/* libFuzzer target for the node's saved state, bridges.json
 * (node/node_state.h). The input is the whole file. It goes through the
 * in-memory decoder and, written to a private temp directory, through the
 * start-up loader that reads the file.
 * Invariants:
 * - the result is 0 or SL_EPARSE; the loader and the decoder agree (code,
 *   count, skipped and every record);
 * - a kept record is well-formed: NUL-terminated strings, an identity of
 *   "" or two letters and ten [a-z0-9], an upstream and a hub that parse;
 * - the cap on records only moves records from kept to skipped (max 1
 *   keeps the first kept record of the full decode);
 * - what was kept encodes and decodes back to the same records, none
 *   skipped. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "node/node_state.h"
#include "node/node_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sl_node_bridge_rec recs[SL_NODE_BRIDGES_MAX];
static struct sl_node_bridge_rec again[SL_NODE_BRIDGES_MAX];
static char dir[64];
static char file[128];

static void cleanup(void)
{
    if (file[0] != '\0')
        unlink(file);
    if (dir[0] != '\0')
        rmdir(dir);
}

static int setup(void)
{
    if (dir[0] != '\0')
        return 0;
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 40)
        tmp = "/tmp";
    snprintf(dir, sizeof(dir), "%s/fuzz-bridges-XXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
        dir[0] = '\0';
        return -1;
    }
    snprintf(file, sizeof(file), "%s/%s", dir, SL_NODE_STATE_FILE);
    atexit(cleanup);
    return 0;
}

static int terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static void check_rec(const struct sl_node_bridge_rec *r)
{
    if (!terminated(r->identity, sizeof(r->identity)) ||
        !terminated(r->upstream, sizeof(r->upstream)) ||
        !terminated(r->hub, sizeof(r->hub)) ||
        !terminated(r->url, sizeof(r->url)) ||
        !terminated(r->username, sizeof(r->username)) ||
        !terminated(r->password, sizeof(r->password)) ||
        !terminated(r->token, sizeof(r->token)))
        abort();
    size_t n = strlen(r->identity);
    if (n != 0 && n != 12)
        abort();
    for (size_t i = 0; i < n; i++) {
        char c = r->identity[i];
        int letter = c >= 'a' && c <= 'z';
        if (i < 2 ? !letter : !(letter || (c >= '0' && c <= '9')))
            abort();
    }
    struct sl_node_url u;
    if (sl_node_url_parse_upstream(r->upstream, &u, NULL, 0) != 0 ||
        sl_node_url_parse_hub(r->hub, &u, NULL, 0) != 0)
        abort();
    if (r->disconnected != 0 && r->disconnected != 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t n = 0, skipped = 0;
    memset(recs, 0, sizeof(recs));
    int rc = sl_node_state_decode(text, size, recs, SL_NODE_BRIDGES_MAX, &n,
                                  &skipped);
    if (rc != 0 && rc != SL_EPARSE)
        abort();
    if (n > SL_NODE_BRIDGES_MAX || (rc != 0 && (n != 0 || skipped != 0)))
        abort();
    for (size_t i = 0; i < n; i++)
        check_rec(&recs[i]);

    /* The same bytes, read from the file by the start-up loader. */
    if (size < SL_NODE_STATE_MAX && setup() == 0) {
        FILE *f = fopen(file, "wb");
        if (f != NULL) {
            int ok = fwrite(data, 1, size, f) == size;
            if (fclose(f) != 0)
                ok = 0;
            if (ok) {
                size_t n2 = 0, s2 = 0;
                memset(again, 0, sizeof(again));
                int rc2 = sl_node_state_load(dir, again, SL_NODE_BRIDGES_MAX,
                                             &n2, &s2);
                if (rc2 != rc || n2 != n || s2 != skipped ||
                    memcmp(again, recs, n * sizeof(recs[0])) != 0)
                    abort();
            }
            unlink(file); /* a crash leaves an empty directory at most */
        }
    }
    if (rc != 0)
        return 0;

    /* A cap of one record: the first kept one, the rest skipped. */
    {
        size_t n1 = 0, s1 = 0;
        struct sl_node_bridge_rec one;
        memset(&one, 0, sizeof(one));
        if (sl_node_state_decode(text, size, &one, 1, &n1, &s1) != 0 ||
            n1 != (n > 0 ? 1 : 0) || n1 + s1 != n + skipped ||
            (n1 == 1 && memcmp(&one, &recs[0], sizeof(one)) != 0))
            abort();
    }

    /* What was kept survives a save and a load unchanged. */
    char *enc = sl_node_state_encode(recs, n);
    if (enc == NULL)
        return 0;
    size_t n3 = 0, s3 = 0;
    memset(again, 0, sizeof(again));
    if (sl_node_state_decode(enc, strlen(enc), again, SL_NODE_BRIDGES_MAX,
                             &n3, &s3) != 0 ||
        n3 != n || s3 != 0 || memcmp(again, recs, n * sizeof(recs[0])) != 0)
        abort();
    free(enc);
    return 0;
}
