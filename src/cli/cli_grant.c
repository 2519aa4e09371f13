/* `sluice grant keygen|sign|show`: the hub operator's licences
 * (tunnel/grant.h has the token format). keygen makes the Ed25519 key
 * pair (PKCS#8 private key, 0600; SPKI public key), sign prints a token,
 * show says what a token grants and whether it holds. Local files only:
 * no hub is involved. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cli/cli.h"
#include "cli/cli_grant.h"
#include "cli/cli_util.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/rate.h"
#include "core/size.h"
#include "tunnel/grant.h"

static const char grant_usage[] =
    "usage: sluice grant <command> [options]\n"
    "\n"
    "commands:\n"
    "  keygen --out DIR [--force]    make an Ed25519 key pair:\n"
    "                                DIR/grant.key (private, mode 0600) and\n"
    "                                DIR/grant.pub (for the hub's\n"
    "                                --grant-key)\n"
    "  sign --key DIR/grant.key [--features bridge,tcp,udp] [--bridges N]\n"
    "       [--traffic SIZE] [--rate RATE] [--expires WHEN]\n"
    "       [--identity ID | --subject NAME]\n"
    "                                print a grant (a token; no secret in\n"
    "                                it) for a bridge's --grant\n"
    "  show TOKEN|@FILE [--key DIR/grant.pub] [--json]\n"
    "                                what a grant grants, and whether it is\n"
    "                                valid (signed by --key, not expired);\n"
    "                                exit status 1 when it is not\n"
    "\n"
    "--features: bridge (a bridge may connect), tcp, udp (public stream\n"
    "  ports); default bridge. --bridges, --traffic, --rate: 0 or absent\n"
    "  is unlimited. SIZE: " SL_SIZE_UNITS_HELP ".\n"
    "  RATE (each direction): " SL_RATE_UNITS_HELP ".\n"
    "WHEN: 2027-12-31 (the end of that day, UTC), 2027-12-31T12:00:00Z,\n"
    "  a duration from now (3600, 30m, 12h, 90d) or never (the default).\n";

#define KEY_FILE "grant.key"
#define PUB_FILE "grant.pub"

static void print_ssl_error(const char *what)
{
    fprintf(stderr, "sluice: grant: %s\n", what);
}

/* Writes key to path with mode, made new (O_EXCL unless force). */
static int write_pem(const char *path, EVP_PKEY *key, int private_key,
                     int force)
{
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL);
    int fd = open(path, flags, private_key ? 0600 : 0644);
    if (fd < 0) {
        fprintf(stderr, "sluice: grant keygen: %s: %s%s\n", path,
                strerror(errno),
                errno == EEXIST ? " (give --force to replace it)" : "");
        return 1;
    }
    /* An existing file keeps its mode through O_TRUNC. */
    if (private_key && fchmod(fd, 0600) != 0) {
        fprintf(stderr, "sluice: grant keygen: %s: %s\n", path,
                strerror(errno));
        close(fd);
        return 1;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return 1;
    }
    int ok = private_key
                 ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_PUBKEY(f, key);
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        fprintf(stderr, "sluice: grant keygen: writing %s failed\n", path);
        return 1;
    }
    return 0;
}

static int cmd_keygen(int argc, char **argv)
{
    const char *dir = NULL;
    int force = 0;
    for (int i = 0; i < argc; i++) {
        int m = sl_cli_opt_value(argc, argv, &i, "--out", &dir);
        if (m < 0)
            return 2;
        if (m > 0)
            continue;
        if (strcmp(argv[i], "--force") == 0) {
            force = 1;
            continue;
        }
        fprintf(stderr, "sluice: grant keygen: unexpected '%s'\n", argv[i]);
        return 2;
    }
    if (dir == NULL) {
        fprintf(stderr, "sluice: grant keygen needs --out DIR\n");
        return 2;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "sluice: grant keygen: %s: %s\n", dir,
                strerror(errno));
        return 1;
    }
    char kpath[4096], ppath[4096];
    if (snprintf(kpath, sizeof(kpath), "%s/%s", dir, KEY_FILE) >=
            (int)sizeof(kpath) ||
        snprintf(ppath, sizeof(ppath), "%s/%s", dir, PUB_FILE) >=
            (int)sizeof(ppath)) {
        fprintf(stderr, "sluice: grant keygen: %s: path too long\n", dir);
        return 2;
    }
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (key == NULL) {
        print_ssl_error("cannot make an Ed25519 key");
        return 1;
    }
    int rc = write_pem(kpath, key, 1, force);
    if (rc == 0)
        rc = write_pem(ppath, key, 0, force);
    EVP_PKEY_free(key);
    if (rc != 0)
        return rc;
    printf("private key %s (keep it secret: it signs grants)\n"
           "public key  %s (the hub's --grant-key)\n",
           kpath, ppath);
    return 0;
}

/* Loads an Ed25519 key from a PEM file: a private key when want_private,
 * else a public key (or the public half of a private key file). */
static EVP_PKEY *load_key(const char *path, int want_private)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "sluice: grant: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = NULL;
    if (!want_private)
        k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (k == NULL) {
        rewind(f);
        k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    }
    struct stat st;
    if (k != NULL && want_private && fstat(fileno(f), &st) == 0 &&
        (st.st_mode & 077) != 0)
        fprintf(stderr, "sluice: grant: warning: %s can be read by others "
                "(chmod 600 it)\n", path);
    fclose(f);
    if (k == NULL) {
        fprintf(stderr, "sluice: grant: %s: not a PEM %s key\n", path,
                want_private ? "private" : "public");
        return NULL;
    }
    if (!EVP_PKEY_is_a(k, "ED25519")) {
        fprintf(stderr, "sluice: grant: %s: not an Ed25519 key\n", path);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

static int parse_features(const char *s, unsigned *out)
{
    *out = 0;
    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        if (n == 6 && strncmp(s, "bridge", 6) == 0)
            *out |= SL_GRANT_BRIDGE;
        else if (n == 3 && strncmp(s, "tcp", 3) == 0)
            *out |= SL_GRANT_TCP;
        else if (n == 3 && strncmp(s, "udp", 3) == 0)
            *out |= SL_GRANT_UDP;
        else if (n != 0)
            return SL_EPARSE;
        s += n + (comma ? 1 : 0);
    }
    return 0;
}

/* WHEN -> unix seconds (0: never). */
static int parse_expires(const char *s, int64_t *out)
{
    char full[SL_GRANT_TIME_LEN + 1];
    uint64_t secs;
    if (strcmp(s, "never") == 0) {
        *out = 0;
        return 0;
    }
    if (strlen(s) == 10 && s[4] == '-' && s[7] == '-') {
        snprintf(full, sizeof(full), "%sT23:59:59Z", s);
        return sl_grant_time_parse(full, strlen(full), out);
    }
    if (sl_grant_time_parse(s, strlen(s), out) == 0)
        return 0;
    if (sl_duration_parse_s(s, &secs) == 0 && secs > 0) {
        *out = (int64_t)time(NULL) + (int64_t)secs;
        return 0;
    }
    return SL_EPARSE;
}

static int cmd_sign(int argc, char **argv)
{
    const char *keyfile = NULL, *features = "bridge", *bridges = NULL;
    const char *traffic = NULL, *rate = NULL, *expires = NULL;
    const char *identity = NULL, *subject = NULL;
    const struct {
        const char *name;
        const char **dst;
    } opts[] = {
        {"--key", &keyfile},         {"--features", &features},
        {"--bridges", &bridges},     {"--traffic", &traffic},
        {"--rate", &rate},           {"--expires", &expires},
        {"--identity", &identity},   {"--subject", &subject},
    };
    for (int i = 0; i < argc; i++) {
        int m = 0;
        for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]) && m == 0; k++)
            m = sl_cli_opt_value(argc, argv, &i, opts[k].name, opts[k].dst);
        if (m < 0)
            return 2;
        if (m == 0) {
            fprintf(stderr, "sluice: grant sign: unexpected '%s'\n",
                    argv[i]);
            return 2;
        }
    }
    struct sl_grant g;
    memset(&g, 0, sizeof(g));
    char *end = NULL;
    if (keyfile == NULL) {
        fprintf(stderr, "sluice: grant sign needs --key DIR/" KEY_FILE "\n");
        return 2;
    }
    if (parse_features(features, &g.features) != 0) {
        fprintf(stderr, "sluice: grant sign: --features: '%s' is not a list "
                "of bridge, tcp, udp\n", features);
        return 2;
    }
    if (bridges != NULL) {
        errno = 0;
        unsigned long long v = strtoull(bridges, &end, 10);
        if (*bridges < '0' || *bridges > '9' || *end != '\0' || errno != 0 ||
            v > 1000000) {
            fprintf(stderr, "sluice: grant sign: --bridges: '%s' is not a "
                    "count (0 = unlimited)\n", bridges);
            return 2;
        }
        g.bridges = v;
    }
    if (traffic != NULL && sl_size_parse(traffic, &g.traffic) != 0) {
        fprintf(stderr, "sluice: grant sign: --traffic: '%s' is not a size "
                "(e.g. 10MB, 50GB, 0)\n", traffic);
        return 2;
    }
    if (rate != NULL && sl_rate_parse(rate, &g.rate) != 0) {
        fprintf(stderr, "sluice: grant sign: --rate: '%s' is not a rate "
                "(e.g. 100Mbit, 10MB/s, 0)\n", rate);
        return 2;
    }
    if (expires != NULL && parse_expires(expires, &g.expires) != 0) {
        fprintf(stderr, "sluice: grant sign: --expires: '%s' is not a date "
                "(2027-12-31), a time (2027-12-31T12:00:00Z), a duration "
                "(90d) or never\n", expires);
        return 2;
    }
    if (identity != NULL && subject != NULL) {
        fprintf(stderr, "sluice: grant sign: --identity or --subject, not "
                "both\n");
        return 2;
    }
    if (identity != NULL) {
        if (!sl_identity_valid(identity, strlen(identity))) {
            fprintf(stderr, "sluice: grant sign: --identity: '%s' is not an "
                    "identity\n", identity);
            return 2;
        }
        memcpy(g.identity, identity, SL_IDENTITY_LEN + 1);
    }
    if (subject != NULL) {
        size_t n = strlen(subject);
        int ok = n > 0 && n < sizeof(g.subject);
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)subject[i] >= 0x20 && subject[i] != 0x7f;
        if (!ok) {
            fprintf(stderr, "sluice: grant sign: --subject: 1 to %zu "
                    "printable characters\n", sizeof(g.subject) - 1);
            return 2;
        }
        memcpy(g.subject, subject, n + 1);
    }
    EVP_PKEY *key = load_key(keyfile, 1);
    if (key == NULL)
        return 1;
    char token[SL_GRANT_TOKEN_MAX + 1];
    int n = sl_grant_sign(&g, key, token, sizeof(token));
    EVP_PKEY_free(key);
    if (n < 0) {
        fprintf(stderr, "sluice: grant sign: %s\n", sl_strerror(n));
        return 1;
    }
    printf("%s\n", token);
    return 0;
}

/* TOKEN, or @FILE holding it (surrounding white space dropped). */
static int read_token(const char *arg, char *out, size_t cap)
{
    size_t n;
    if (arg[0] != '@') {
        n = strlen(arg);
        if (n >= cap)
            return SL_ETOOBIG;
        memcpy(out, arg, n + 1);
        return 0;
    }
    FILE *f = fopen(arg + 1, "r");
    if (f == NULL) {
        fprintf(stderr, "sluice: grant: %s: %s\n", arg + 1, strerror(errno));
        return UV_ENOENT;
    }
    n = fread(out, 1, cap - 1, f);
    int full = n == cap - 1 && fgetc(f) != EOF;
    fclose(f);
    if (full)
        return SL_ETOOBIG;
    out[n] = '\0';
    size_t s = 0;
    while (s < n && (out[s] == ' ' || out[s] == '\t' || out[s] == '\n' ||
                     out[s] == '\r'))
        s++;
    while (n > s && (out[n - 1] == ' ' || out[n - 1] == '\t' ||
                     out[n - 1] == '\n' || out[n - 1] == '\r'))
        n--;
    memmove(out, out + s, n - s);
    out[n - s] = '\0';
    return 0;
}

int sl_cli_grant_arg(const char *flag, const char *arg, char *out,
                     size_t cap)
{
    int rc = read_token(arg, out, cap);
    if (rc == SL_ETOOBIG)
        fprintf(stderr, "sluice: %s: longer than a grant can be\n", flag);
    else if (rc == 0 && out[0] == '\0')
        fprintf(stderr, "sluice: %s: empty\n", flag);
    return rc != 0 || out[0] == '\0';
}

static void features_text(unsigned f, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s%s", f & SL_GRANT_BRIDGE ? "bridge," : "",
             f & SL_GRANT_TCP ? "tcp," : "", f & SL_GRANT_UDP ? "udp," : "",
             f == 0 ? "none" : "");
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] == ',')
        out[n - 1] = '\0';
}

static int cmd_show(int argc, char **argv)
{
    const char *arg = NULL, *keyfile = NULL;
    int json_out = 0;
    for (int i = 0; i < argc; i++) {
        int m = sl_cli_opt_value(argc, argv, &i, "--key", &keyfile);
        if (m < 0)
            return 2;
        if (m > 0)
            continue;
        if (strcmp(argv[i], "--json") == 0)
            json_out = 1;
        else if (arg == NULL && (argv[i][0] != '-' || argv[i][1] == '\0'))
            arg = argv[i];
        else {
            fprintf(stderr, "sluice: grant show: unexpected '%s'\n", argv[i]);
            return 2;
        }
    }
    if (arg == NULL) {
        fprintf(stderr, "sluice: grant show needs a TOKEN or @FILE\n");
        return 2;
    }
    char token[SL_GRANT_TOKEN_MAX + 2];
    int rc = read_token(arg, token, sizeof(token));
    if (rc != 0) {
        if (rc == SL_ETOOBIG)
            fprintf(stderr, "sluice: grant show: longer than a grant can "
                    "be\n");
        return 1;
    }
    /* What it says, signed or not; then whether it holds. */
    unsigned char payload[SL_GRANT_PAYLOAD_MAX];
    unsigned char sig[SL_GRANT_SIG_LEN];
    size_t plen = 0;
    struct sl_grant g;
    enum sl_grant_status st = SL_GRANT_OK;
    if (sl_grant_split(token, strlen(token), payload, sizeof(payload), &plen,
                       sig) != 0 ||
        sl_grant_parse_payload((const char *)payload, plen, &g) != 0) {
        st = SL_GRANT_MALFORMED;
        memset(&g, 0, sizeof(g));
    }
    const char *signature = "not checked (give --key DIR/" PUB_FILE ")";
    if (st == SL_GRANT_OK && keyfile != NULL) {
        EVP_PKEY *pub = load_key(keyfile, 0);
        if (pub == NULL)
            return 1;
        st = sl_grant_verify(token, strlen(token), pub, &g);
        EVP_PKEY_free(pub);
        signature = st == SL_GRANT_OK ? "valid" : "INVALID";
    }
    /* Identity: a bound grant is judged for the identity it names. */
    if (st == SL_GRANT_OK)
        st = sl_grant_check(&g, (int64_t)time(NULL),
                            g.identity[0] ? g.identity : NULL);
    char feats[32], exp[SL_GRANT_TIME_LEN + 1] = "never", size[SL_FMT_MAX];
    char rate[32];
    features_text(g.features, feats, sizeof(feats));
    if (g.expires > 0)
        sl_grant_time_format(g.expires, exp);
    sl_rate_format(g.rate, rate, sizeof(rate));
    char traffic_text[SL_FMT_MAX + 40] = "unlimited";
    if (g.traffic > 0) {
        sl_fmt_bytes(g.traffic, size, sizeof(size));
        snprintf(traffic_text, sizeof(traffic_text), "%" PRIu64 " bytes (%s)",
                 g.traffic, size);
    }
    const char *verdict = st == SL_GRANT_OK && keyfile != NULL ? "valid"
                          : st == SL_GRANT_OK ? "well-formed, not expired"
                                              : sl_grant_why(st);
    if (json_out) {
        json_t *j = json_pack(
            "{s:s, s:b, s:s, s:I, s:I, s:I, s:o, s:o, s:o}", "status",
            verdict, "valid", st == SL_GRANT_OK && keyfile != NULL,
            "features", feats, "bridges", (json_int_t)g.bridges, "traffic",
            (json_int_t)g.traffic, "rate", (json_int_t)g.rate, "expires",
            g.expires > 0 ? json_string(exp) : json_null(), "identity",
            g.identity[0] ? json_string(g.identity) : json_null(), "subject",
            g.subject[0] ? json_string(g.subject) : json_null());
        sl_cli_print_json(j);
        json_decref(j);
    } else if (st == SL_GRANT_MALFORMED) {
        printf("status    %s\n", verdict);
    } else {
        printf("features  %s\n", feats);
        if (g.bridges > 0)
            printf("bridges   %" PRIu64 "\n", g.bridges);
        else
            printf("bridges   unlimited\n");
        printf("traffic   %s\n", traffic_text);
        printf("rate      %s\n", rate);
        printf("expires   %s\n", exp);
        if (g.identity[0])
            printf("identity  %s\n", g.identity);
        if (g.subject[0])
            printf("subject   %s\n", g.subject);
        printf("signature %s\n", signature);
        printf("status    %s\n", verdict);
    }
    return st == SL_GRANT_OK ? 0 : 1;
}

int sl_cli_grant(struct sl_cli *cli)
{
    if (cli->argc < 1 || sl_cli_wants_help(cli->argc, cli->argv)) {
        fputs(grant_usage, cli->argc < 1 ? stderr : stdout);
        return cli->argc < 1 ? 2 : 0;
    }
    const char *cmd = cli->argv[0];
    int argc = cli->argc - 1;
    char **argv = cli->argv + 1;
    if (strcmp(cmd, "keygen") == 0)
        return cmd_keygen(argc, argv);
    if (strcmp(cmd, "sign") == 0)
        return cmd_sign(argc, argv);
    if (strcmp(cmd, "show") == 0)
        return cmd_show(argc, argv);
    fprintf(stderr, "sluice: grant: unknown command '%s'\n%s", cmd,
            grant_usage);
    return 2;
}
