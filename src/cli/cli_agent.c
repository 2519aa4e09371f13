/* `sluice agent certs|probe|info`: the node agent port seen from the
 * command line (docs/node.md, "The agent port").
 *
 *  - certs makes the mutual-TLS material: a CA and two ECDSA P-256 pairs
 *    issued by it, the agent's (server) and the client's (for the proxy
 *    side's `agents:` and for probe/info).
 *  - probe sends a stream header with the probe flag (over TLS, or DTLS
 *    with --udp) and prints the agent's status.
 *  - info asks GET /info over ALPN http/1.1 and prints the JSON.
 *
 * A command-line tool: it blocks on its own sockets (bounded by
 * --timeout) and runs no loop. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "core/error.h"
#include "net/addr.h"
#include "proto/agent_header.h"
#include "tls/tls_ca.h"
#include "tls/tls_util.h"

#define CERT_DAYS 825 /* the leaves; the CA lives SL_TLS_CA_DAYS */
#define NAMES_MAX 16
#define INFO_MAX (256 * 1024)

static const char agent_usage[] =
    "usage: sluice agent <command> [options]\n"
    "\n"
    "commands:\n"
    "  certs --out DIR [--host NAME]... [--force]\n"
    "        make a CA and two ECDSA P-256 pairs it issues, for mutual\n"
    "        TLS on a node's agent port: DIR/ca.pem, DIR/ca.key,\n"
    "        DIR/agent.pem, DIR/agent.key (the node's: --agent-certs DIR),\n"
    "        DIR/client.pem, DIR/client.key (the proxy side's); keys mode\n"
    "        0600. The agent's certificate names localhost, 127.0.0.1, ::1\n"
    "        and each --host (a DNS name or an IP address).\n"
    "  probe ADDR [TARGET] [--udp]\n"
    "        a health probe: the agent answers its status (with TARGET,\n"
    "        HOST:PORT, after dialling it); over DTLS with --udp. Exit\n"
    "        status 0 for ok, 1 otherwise\n"
    "  info ADDR\n"
    "        GET /info over the agent port (ALPN http/1.1): the JSON the\n"
    "        agent states about itself\n"
    "\n"
    "probe and info take the client's certificates: --certs DIR\n"
    "(DIR/ca.pem, DIR/client.pem, DIR/client.key) or --ca FILE --cert FILE\n"
    "--key FILE, and --timeout SECONDS (default 10). ADDR is HOST:PORT\n"
    "([v6]:PORT for IPv6).\n";

/* ---------------------------------------------------------------- certs */

static int add_ext(X509 *issuer, X509 *subject, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, subject, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return 0;
    int ok = X509_add_ext(subject, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* The client's certificate: clientAuth only, so it cannot serve as an
 * agent (tls_ca.c's leaves are serverAuth). */
static X509 *issue_client(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key,
                          time_t now)
{
    X509 *x = X509_new();
    time_t nb = now - 3600, na = now + (time_t)CERT_DAYS * 86400;
    unsigned char rnd[16];
    ASN1_INTEGER *serial = NULL;
    BIGNUM *bn = NULL;
    int ok = 0;
    if (x == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto out;
    rnd[0] &= 0x7f; /* positive */
    rnd[0] |= 0x01;
    bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
    serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    X509_NAME *name = X509_get_subject_name(x);
    if (serial == NULL || !X509_set_version(x, X509_VERSION_3) ||
        !X509_set_serialNumber(x, serial) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)"sluice agent "
                                                           "client",
                                    -1, -1, 0) ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca)) ||
        !X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &nb) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &na) ||
        !X509_set_pubkey(x, key) ||
        !add_ext(ca, x, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(ca, x, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(ca, x, NID_ext_key_usage, "clientAuth") ||
        !add_ext(ca, x, NID_subject_key_identifier, "hash") ||
        !add_ext(ca, x, NID_authority_key_identifier, "keyid:always") ||
        !X509_sign(x, ca_key, EVP_sha256()))
        goto out;
    ok = 1;
out:
    ERR_clear_error();
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* Writes a certificate (0644) or a key (0600) as dir/name, new unless
 * force. Returns 0 or 1 (printed). */
static int write_pem(const char *dir, const char *name, X509 *x, EVP_PKEY *k,
                     int force)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >=
        (int)sizeof(path)) {
        fprintf(stderr, "sluice: agent certs: %s: path too long\n", dir);
        return 1;
    }
    mode_t mode = k != NULL ? 0600 : 0644;
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL);
    int fd = open(path, flags, mode);
    if (fd < 0) {
        fprintf(stderr, "sluice: agent certs: %s: %s%s\n", path,
                strerror(errno),
                errno == EEXIST ? " (give --force to replace it)" : "");
        return 1;
    }
    /* An existing file keeps its mode through O_TRUNC. */
    if (fchmod(fd, mode) != 0) {
        fprintf(stderr, "sluice: agent certs: %s: %s\n", path,
                strerror(errno));
        close(fd);
        return 1;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return 1;
    }
    int ok = k != NULL ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL)
                       : PEM_write_X509(f, x);
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        fprintf(stderr, "sluice: agent certs: writing %s failed\n", path);
        return 1;
    }
    return 0;
}

static int cmd_certs(int argc, char **argv)
{
    const char *dir = NULL;
    const char *names[NAMES_MAX + 3] = {"localhost", "127.0.0.1", "::1"};
    size_t nnames = 3;
    int force = 0, rc = 1;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int m = sl_cli_opt_value(argc, argv, &i, "--out", &dir);
        if (m < 0)
            return 2;
        if (m > 0)
            continue;
        if ((m = sl_cli_opt_value(argc, argv, &i, "--host", &v)) != 0) {
            if (m < 0)
                return 2;
            if (nnames == NAMES_MAX + 3 || v[0] == '\0' || strlen(v) > 253) {
                fprintf(stderr, "sluice: agent certs: --host %s: %s\n", v,
                        nnames == NAMES_MAX + 3 ? "too many names"
                                                : "not a name");
                return 2;
            }
            names[nnames++] = v;
            continue;
        }
        if (strcmp(argv[i], "--force") == 0) {
            force = 1;
            continue;
        }
        fprintf(stderr, "sluice: agent certs: unexpected '%s'\n", argv[i]);
        return 2;
    }
    if (dir == NULL) {
        fprintf(stderr, "sluice: agent certs needs --out DIR\n");
        return 2;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "sluice: agent certs: %s: %s\n", dir,
                strerror(errno));
        return 1;
    }
    time_t now = time(NULL);
    X509 *ca = NULL, *agent = NULL, *client = NULL;
    EVP_PKEY *ca_key = NULL, *agent_key = NULL, *client_key = NULL;
    if (sl_tls_ca_make(now, &ca, &ca_key) != 0 ||
        (agent_key = sl_tls_ca_new_key()) == NULL ||
        (client_key = sl_tls_ca_new_key()) == NULL ||
        (agent = sl_tls_ca_issue(ca, ca_key, agent_key, names, nnames,
                                 now - 3600,
                                 now + (time_t)CERT_DAYS * 86400)) == NULL ||
        (client = issue_client(ca, ca_key, client_key, now)) == NULL) {
        fprintf(stderr, "sluice: agent certs: cannot make the certificates "
                        "(out of memory, or a --host OpenSSL refuses)\n");
        goto out;
    }
    if (write_pem(dir, "ca.key", NULL, ca_key, force) != 0 ||
        write_pem(dir, "ca.pem", ca, NULL, force) != 0 ||
        write_pem(dir, "agent.key", NULL, agent_key, force) != 0 ||
        write_pem(dir, "agent.pem", agent, NULL, force) != 0 ||
        write_pem(dir, "client.key", NULL, client_key, force) != 0 ||
        write_pem(dir, "client.pem", client, NULL, force) != 0)
        goto out;
    printf("wrote %s/ca.pem, ca.key, agent.pem, agent.key, client.pem, "
           "client.key\n",
           dir);
    printf("agent:  sluice boot up --bridge --agent 0.0.0.0:8890 "
           "--agent-certs %s\n",
           dir);
    printf("proxy:  agents: {NAME: {address: HOST:8890, ca: %s/ca.pem, "
           "cert: %s/client.pem, key: %s/client.key}}\n",
           dir, dir, dir);
    rc = 0;
out:
    X509_free(ca);
    X509_free(agent);
    X509_free(client);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(agent_key);
    EVP_PKEY_free(client_key);
    return rc;
}

/* --------------------------------------------------------- probe, info */

struct client_opts {
    const char *certs, *ca, *cert, *key;
    long timeout_s;
    int udp;
    const char *addr, *target;
    char ca_buf[4096], cert_buf[4096], key_buf[4096];
};

static int parse_client(const char *cmd, int argc, char **argv,
                        struct client_opts *o, int with_target)
{
    static const struct sl_cli_str_opt strs[] = {
        {"--certs", offsetof(struct client_opts, certs)},
        {"--ca", offsetof(struct client_opts, ca)},
        {"--cert", offsetof(struct client_opts, cert)},
        {"--key", offsetof(struct client_opts, key)},
    };
    o->timeout_s = 10;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int m = sl_cli_opt_strings(argc, argv, &i, strs, 4, o);
        if (m < 0)
            return 2;
        if (m > 0)
            continue;
        if ((m = sl_cli_opt_value(argc, argv, &i, "--timeout", &v)) != 0) {
            char *end;
            if (m < 0)
                return 2;
            o->timeout_s = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || o->timeout_s < 1 ||
                o->timeout_s > 600) {
                fprintf(stderr, "sluice: agent %s: --timeout: '%s' is not "
                                "1-600 seconds\n", cmd, v);
                return 2;
            }
            continue;
        }
        if (with_target && strcmp(argv[i], "--udp") == 0) {
            o->udp = 1;
            continue;
        }
        if (argv[i][0] == '-') {
            fprintf(stderr, "sluice: agent %s: unknown option '%s'\n", cmd,
                    argv[i]);
            return 2;
        }
        if (o->addr == NULL)
            o->addr = argv[i];
        else if (with_target && o->target == NULL)
            o->target = argv[i];
        else {
            fprintf(stderr, "sluice: agent %s: unexpected '%s'\n", cmd,
                    argv[i]);
            return 2;
        }
    }
    if (o->addr == NULL) {
        fprintf(stderr, "sluice: agent %s needs the agent's HOST:PORT\n%s",
                cmd, agent_usage);
        return 2;
    }
    if (o->certs != NULL) {
        snprintf(o->ca_buf, sizeof(o->ca_buf), "%s/ca.pem", o->certs);
        snprintf(o->cert_buf, sizeof(o->cert_buf), "%s/client.pem",
                 o->certs);
        snprintf(o->key_buf, sizeof(o->key_buf), "%s/client.key", o->certs);
        if (o->ca == NULL)
            o->ca = o->ca_buf;
        if (o->cert == NULL)
            o->cert = o->cert_buf;
        if (o->key == NULL)
            o->key = o->key_buf;
    }
    if (o->ca == NULL || o->cert == NULL || o->key == NULL) {
        fprintf(stderr, "sluice: agent %s needs --certs DIR, or --ca, "
                        "--cert and --key\n", cmd);
        return 2;
    }
    return 0;
}

/* Splits "host:port" / "[v6]:port". Returns 0 or 2 (printed). */
static int split_addr(const char *cmd, const char *what, const char *s,
                      char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(s, ':');
    const char *h = s;
    size_t hl = colon ? (size_t)(colon - s) : 0;
    if (colon != NULL && s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
        h = s + 1;
        hl -= 2;
    }
    long pn = 0;
    if (colon != NULL && colon[1] != '\0' &&
        strspn(colon + 1, "0123456789") == strlen(colon + 1) &&
        strlen(colon + 1) <= 5)
        pn = strtol(colon + 1, NULL, 10);
    if (colon == NULL || hl == 0 || hl >= hcap || strlen(colon + 1) >= pcap ||
        pn < 1 || pn > 65535) {
        fprintf(stderr, "sluice: agent %s: %s '%s' is not HOST:PORT\n", cmd,
                what, s);
        return 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, pcap, "%s", colon + 1);
    return 0;
}

static void print_ossl(const char *cmd, const char *what)
{
    char reason[200];
    fprintf(stderr, "sluice: agent %s: %s: %s\n", cmd, what,
            sl_tls_ossl_reason(reason, sizeof(reason)));
}

static SSL_CTX *client_ctx(const char *cmd, const struct client_opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(o->udp ? DTLS_client_method()
                                      : TLS_client_method());
    if (ctx == NULL) {
        print_ossl(cmd, "TLS set-up");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, o->udp ? DTLS1_2_VERSION
                                              : TLS1_2_VERSION);
    if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
        print_ossl(cmd, o->ca);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
        print_ossl(cmd, o->cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        print_ossl(cmd, o->key);
        goto fail;
    }
    /* The agent is whoever holds a certificate of this CA: the CA is
     * made for agents alone (sluice agent certs). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* A socket connected to host:port (TCP or UDP), with send and receive
 * timeouts. Returns the fd or -1 (printed). */
static int dial(const char *cmd, const char *host, const char *port, int udp,
                long timeout_s)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "sluice: agent %s: %s: %s\n", cmd, host,
                gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    struct timeval tv = {.tv_sec = timeout_s};
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "sluice: agent %s: cannot connect to %s port %s: "
                        "%s\n", cmd, host, port, strerror(err));
    return fd;
}

/* A TLS (or DTLS) session to the agent over fd, handshake done. NULL on
 * failure (printed; fd is left to the caller). */
static SSL *handshake(const char *cmd, SSL_CTX *ctx, int fd, int udp,
                      const char *alpn, long timeout_s)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        print_ossl(cmd, "TLS set-up");
        return NULL;
    }
    if (udp) {
        BIO *bio = BIO_new_dgram(fd, BIO_NOCLOSE);
        struct timeval tv = {.tv_sec = timeout_s};
        if (bio == NULL) {
            SSL_free(ssl);
            return NULL;
        }
        /* The socket is connected; the BIO must know its peer too. */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        BIO_ADDR *peer = BIO_ADDR_new();
        int ok = peer != NULL &&
                 getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
                 (ss.ss_family == AF_INET
                      ? BIO_ADDR_rawmake(
                            peer, AF_INET,
                            &((struct sockaddr_in *)&ss)->sin_addr, 4,
                            ((struct sockaddr_in *)&ss)->sin_port)
                      : BIO_ADDR_rawmake(
                            peer, AF_INET6,
                            &((struct sockaddr_in6 *)&ss)->sin6_addr, 16,
                            ((struct sockaddr_in6 *)&ss)->sin6_port));
        if (ok)
            BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, peer);
        BIO_ADDR_free(peer);
        BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_RECV_TIMEOUT, 0, &tv);
        SSL_set_bio(ssl, bio, bio);
    } else {
        SSL_set_fd(ssl, fd);
        unsigned char wire[64];
        size_t n = strlen(alpn);
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, alpn, n);
        SSL_set_alpn_protos(ssl, wire, (unsigned)n + 1);
    }
    if (SSL_connect(ssl) != 1) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK)
            fprintf(stderr, "sluice: agent %s: the agent's certificate: "
                            "%s\n", cmd, X509_verify_cert_error_string(v));
        else
            print_ossl(cmd, "handshake failed (is this an agent port, and "
                            "is the client certificate one it trusts?)");
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

static int cmd_probe(int argc, char **argv)
{
    struct client_opts o;
    memset(&o, 0, sizeof(o));
    int rc = parse_client("probe", argc, argv, &o, 1);
    if (rc != 0)
        return rc;
    char host[256], port[8];
    struct sl_agent_hdr h = {.flags = SL_AGENT_FLAG_PROBE,
                             .proto = o.udp ? SL_AGENT_PROTO_UDP
                                            : SL_AGENT_PROTO_TCP};
    if (o.target != NULL) {
        char th[SL_AGENT_HOST_MAX + 1], tp[8];
        if (split_addr("probe", "target", o.target, th, sizeof(th), tp,
                       sizeof(tp)) != 0)
            return 2;
        snprintf(h.host, sizeof(h.host), "%s", th);
        h.port = (uint16_t)strtol(tp, NULL, 10);
    }
    uint8_t hdr[SL_AGENT_HDR_LEN];
    if (sl_agent_hdr_encode(&h, hdr) != 0) {
        fprintf(stderr, "sluice: agent probe: target '%s' is not a host "
                        "name or an IP address with a port\n", o.target);
        return 2;
    }
    if (split_addr("probe", "address", o.addr, host, sizeof(host), port,
                   sizeof(port)) != 0)
        return 2;
    SSL_CTX *ctx = client_ctx("probe", &o);
    if (ctx == NULL)
        return 1;
    rc = 1;
    SSL *ssl = NULL;
    int fd = dial("probe", host, port, o.udp, o.timeout_s);
    if (fd < 0)
        goto out;
    ssl = handshake("probe", ctx, fd, o.udp, SL_AGENT_ALPN_STREAM,
                    o.timeout_s);
    if (ssl == NULL)
        goto out;
    if (!o.udp) {
        const unsigned char *sel = NULL;
        unsigned sel_len = 0;
        SSL_get0_alpn_selected(ssl, &sel, &sel_len);
        if (sel_len != strlen(SL_AGENT_ALPN_STREAM) ||
            memcmp(sel, SL_AGENT_ALPN_STREAM, sel_len) != 0) {
            fprintf(stderr, "sluice: agent probe: the agent did not agree "
                            "to %s\n", SL_AGENT_ALPN_STREAM);
            goto out;
        }
    }
    unsigned char status;
    if (SSL_write(ssl, hdr, sizeof(hdr)) != (int)sizeof(hdr) ||
        SSL_read(ssl, &status, 1) != 1) {
        print_ossl("probe", "no status from the agent");
        goto out;
    }
    printf("%s%s%s\n", sl_agent_status_name(status),
           o.target ? " " : "", o.target ? o.target : "");
    rc = status == SL_AGENT_OK ? 0 : 1;
out:
    if (ssl != NULL) {
        (void)SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

static int cmd_info(int argc, char **argv)
{
    struct client_opts o;
    memset(&o, 0, sizeof(o));
    int rc = parse_client("info", argc, argv, &o, 0);
    if (rc != 0)
        return rc;
    char host[256], port[8];
    if (split_addr("info", "address", o.addr, host, sizeof(host), port,
                   sizeof(port)) != 0)
        return 2;
    SSL_CTX *ctx = client_ctx("info", &o);
    if (ctx == NULL)
        return 1;
    rc = 1;
    SSL *ssl = NULL;
    char *buf = NULL;
    json_t *j = NULL;
    int fd = dial("info", host, port, 0, o.timeout_s);
    if (fd < 0)
        goto out;
    ssl = handshake("info", ctx, fd, 0, SL_AGENT_ALPN_HTTP, o.timeout_s);
    if (ssl == NULL)
        goto out;
    char req[400];
    int n = snprintf(req, sizeof(req),
                     "GET /info HTTP/1.1\r\nHost: %s\r\nConnection: "
                     "close\r\nAccept: application/json\r\n\r\n",
                     host);
    if (SSL_write(ssl, req, n) != n) {
        print_ossl("info", "sending the request");
        goto out;
    }
    buf = malloc(INFO_MAX + 1);
    if (buf == NULL)
        goto out;
    size_t len = 0;
    int r;
    while (len < INFO_MAX && (r = SSL_read(ssl, buf + len,
                                           (int)(INFO_MAX - len))) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0 || body == NULL) {
        char *eol = strstr(buf, "\r\n");
        if (eol != NULL)
            *eol = '\0';
        fprintf(stderr, "sluice: agent info: the agent answered '%s'\n",
                len > 0 ? buf : "nothing");
        goto out;
    }
    json_error_t jerr;
    j = json_loads(body + 4, 0, &jerr);
    if (j == NULL) {
        fprintf(stderr, "sluice: agent info: not JSON: %s\n", jerr.text);
        goto out;
    }
    rc = sl_cli_print_json(j);
out:
    json_decref(j);
    free(buf);
    if (ssl != NULL) {
        (void)SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

int sl_cli_agent(struct sl_cli *cli)
{
    if (cli->argc < 1 || sl_cli_wants_help(cli->argc, cli->argv)) {
        fputs(agent_usage, cli->argc < 1 ? stderr : stdout);
        return cli->argc < 1 ? 2 : 0;
    }
    const char *cmd = cli->argv[0];
    if (strcmp(cmd, "certs") == 0)
        return cmd_certs(cli->argc - 1, cli->argv + 1);
    if (strcmp(cmd, "probe") == 0)
        return cmd_probe(cli->argc - 1, cli->argv + 1);
    if (strcmp(cmd, "info") == 0)
        return cmd_info(cli->argc - 1, cli->argv + 1);
    fprintf(stderr, "sluice: agent: unknown command '%s'\n%s", cmd,
            agent_usage);
    return 2;
}
