/*
 * harness.c: what the SDK tests need to play the launcher and the services in-process.
 *
 * Included by each test (#include "harness.c"), not compiled on its own: it includes
 * ../attestable.c in turn, so tests reach the SDK's frame codec and JSON reader. Its own
 * cryptography (CSR checks, certificate issue, the service side of the envelopes) is written
 * against libcrypto directly, independently of the SDK's.
 */
#include "../attestable.c"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------------------------------ */
/* Checks                                                                                      */

static int h_failures;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            h_failures++;                                                                 \
        }                                                                                 \
    } while (0)

/* Checks a call's status, printing the SDK's explanation when it is not the expected one. */
#define CHECK_ST(ctx, call, expected)                                                     \
    do {                                                                                  \
        att_status st_ = (call);                                                          \
        if (st_ != (expected)) {                                                          \
            fprintf(stderr, "  %s:%d: %s returned %d, expected %d: %s\n", __FILE__,       \
                    __LINE__, #call, (int)st_, (int)(expected), att_strerror(ctx, st_));  \
            h_failures++;                                                                 \
        }                                                                                 \
    } while (0)

#define CHECK_CONTAINS(haystack, needle)                                                  \
    do {                                                                                  \
        const char *h_ = (haystack);                                                      \
        if (!h_ || !strstr(h_, (needle))) {                                               \
            fprintf(stderr, "  %s:%d: \"%s\" not found in: %s\n", __FILE__, __LINE__,     \
                    (needle), h_ ? h_ : "(null)");                                        \
            h_failures++;                                                                 \
        }                                                                                 \
    } while (0)

/* How long to wait for the other side before calling the test failed: generous, for valgrind. */
#define H_WAIT_MS 120000

/* ------------------------------------------------------------------------------------------ */
/* Certificates                                                                                */

static inline EVP_PKEY *h_keygen(void) { return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); }

struct h_cert_opts {
    bool ca;
    const char *key_usage; /* X509v3 config syntax, NULL for none */
    long not_before;       /* seconds from now */
    long not_after;
};

static const struct h_cert_opts H_CA = {true, "critical,keyCertSign,cRLSign", -60, 86400};
static const struct h_cert_opts H_LEAF = {false, "critical,digitalSignature,keyAgreement", -60, 3600};

static inline bool h_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
    bool ok = ext && X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* Issues a certificate for `pub` (issuer NULL: self-signed with issuer_key). */
static inline X509 *h_issue(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *pub, const char *org, const char *cn,
                     const struct h_cert_opts *o)
{
    static long serial = 1000;
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    bool ok = x && name && X509_set_version(x, X509_VERSION_3) &&
              ASN1_INTEGER_set(X509_get_serialNumber(x), serial++ + (long)getpid() * 100000) &&
              (!org || X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)org, -1, -1, 0)) &&
              X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) &&
              X509_set_subject_name(x, name) &&
              X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) &&
              X509_gmtime_adj(X509_getm_notBefore(x), o->not_before) &&
              X509_gmtime_adj(X509_getm_notAfter(x), o->not_after) && X509_set_pubkey(x, pub) &&
              h_add_ext(x, issuer, NID_basic_constraints, o->ca ? "critical,CA:TRUE" : "critical,CA:FALSE") &&
              (!o->key_usage || h_add_ext(x, issuer, NID_key_usage, o->key_usage)) &&
              h_add_ext(x, issuer, NID_subject_key_identifier, "hash") &&
              (!issuer || h_add_ext(x, issuer, NID_authority_key_identifier, "keyid:always")) &&
              X509_sign(x, issuer_key, EVP_sha256()) > 0;
    X509_NAME_free(name);
    if (!ok) {
        ERR_print_errors_fp(stderr);
        X509_free(x);
        return NULL;
    }
    return x;
}

static inline void h_pem_add(struct buf *b, X509 *x)
{
    char *pem = cert_to_pem(x);
    if (pem)
        buf_adds(b, pem);
    else
        b->oom = true;
    free(pem);
}

/* PEM of up to three certificates, in order; NULLs are skipped. */
static inline char *h_chain(X509 *a, X509 *b, X509 *c)
{
    struct buf out = {0};
    X509 *all[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (all[i])
            h_pem_add(&out, all[i]);
    return (char *)buf_take(&out, NULL);
}

static inline X509 *h_read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    return x;
}

static inline EVP_PKEY *h_read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    return k;
}

struct h_service {
    const char *name;
    EVP_PKEY *key;
    X509 *cert;
    char *chain_pem; /* what SERVICE_CERT answers: the service's certificate, then its CA */
};

/* The launcher's PKI, the services' PKI (its CA is the anchor compiled into the tests), and a
 * rogue CA that no anchor names. */
struct h_world {
    EVP_PKEY *root_key, *inter_key, *svc_ca_key, *rogue_key;
    X509 *root, *inter, *svc_ca, *rogue_ca;
    struct h_service svc[3];
};

static inline struct h_service *h_service(struct h_world *w, const char *name, size_t len)
{
    for (int i = 0; i < 3; i++)
        if (strlen(w->svc[i].name) == len && memcmp(w->svc[i].name, name, len) == 0)
            return &w->svc[i];
    return NULL;
}

static inline bool h_world_init(struct h_world *w, const char *pki_dir)
{
    memset(w, 0, sizeof *w);
    char path[512];
    snprintf(path, sizeof path, "%s/services-ca.pem", pki_dir);
    w->svc_ca = h_read_cert(path);
    snprintf(path, sizeof path, "%s/services-ca.key", pki_dir);
    w->svc_ca_key = h_read_key(path);
    if (!w->svc_ca || !w->svc_ca_key) {
        fprintf(stderr, "cannot read the services CA from %s (run the tests through make)\n", pki_dir);
        return false;
    }
    w->root_key = h_keygen();
    w->inter_key = h_keygen();
    w->rogue_key = h_keygen();
    w->root = h_issue(NULL, w->root_key, w->root_key, "attestable tests", "test launcher root", &H_CA);
    w->inter = h_issue(w->root, w->root_key, w->inter_key, "attestable tests", "test attestation", &H_CA);
    w->rogue_ca = h_issue(NULL, w->rogue_key, w->rogue_key, "attestable tests", "rogue services CA", &H_CA);
    static const char *names[3] = {"store", "taxi", "messaging"};
    for (int i = 0; i < 3; i++) {
        struct h_service *s = &w->svc[i];
        s->name = names[i];
        s->key = h_keygen();
        s->cert = s->key ? h_issue(w->svc_ca, w->svc_ca_key, s->key, "attestable tests", s->name, &H_LEAF) : NULL;
        s->chain_pem = s->cert ? h_chain(s->cert, w->svc_ca, NULL) : NULL;
        if (!s->chain_pem)
            return false;
    }
    return w->root && w->inter && w->rogue_ca;
}

static inline void h_world_free(struct h_world *w)
{
    for (int i = 0; i < 3; i++) {
        EVP_PKEY_free(w->svc[i].key);
        X509_free(w->svc[i].cert);
        free(w->svc[i].chain_pem);
    }
    EVP_PKEY_free(w->root_key);
    EVP_PKEY_free(w->inter_key);
    EVP_PKEY_free(w->svc_ca_key);
    EVP_PKEY_free(w->rogue_key);
    X509_free(w->root);
    X509_free(w->inter);
    X509_free(w->svc_ca);
    X509_free(w->rogue_ca);
}

/* ------------------------------------------------------------------------------------------ */
/* The launcher's end of the channel                                                           */

struct h_peer {
    int fd;
    unsigned char *rx;
    size_t rx_len;
    X509 *run_cert; /* issued on HELLO */
    uint32_t last_corr;
};

static inline void h_peer_free(struct h_peer *p)
{
    free(p->rx);
    p->rx = NULL;
    X509_free(p->run_cert);
    p->run_cert = NULL;
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

/* After a failed expectation: end the conversation at once, so that neither side waits for
 * the other; the program sees end of file, later reads here see it too. */
static inline void h_abort(struct h_peer *p)
{
    if (p->fd >= 0)
        shutdown(p->fd, SHUT_RDWR);
}

static inline bool h_wait_readable(int fd)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    int r;
    do
        r = poll(&pfd, 1, H_WAIT_MS);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

/* Reads n bytes; 1 when all came, 0 on end of file before any, -1 otherwise. */
static inline int h_read(int fd, unsigned char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        if (!h_wait_readable(fd)) {
            fprintf(stderr, "  timed out waiting for the program\n");
            return -1;
        }
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return got == 0 && r == 0 ? 0 : -1;
        got += (size_t)r;
    }
    return 1;
}

/* Receives the next frame from the program: 1 with a frame, 0 at end of file, -1 on error. */
static inline int h_recv(struct h_peer *p, struct frame *fr)
{
    unsigned char hdr[HEADER_LEN];
    int r = h_read(p->fd, hdr, HEADER_LEN);
    if (r <= 0)
        return r;
    uint32_t plen = be32(hdr + 1);
    if (plen > ATT_MAX_FRAME) {
        fprintf(stderr, "  the program sent an oversized header (%lu bytes)\n", (unsigned long)plen);
        return -1;
    }
    free(p->rx);
    p->rx = malloc(HEADER_LEN + (size_t)plen);
    if (!p->rx)
        return -1;
    memcpy(p->rx, hdr, HEADER_LEN);
    if (plen && h_read(p->fd, p->rx + HEADER_LEN, plen) != 1)
        return -1;
    p->rx_len = HEADER_LEN + plen;
    size_t flen;
    const char *why;
    enum verdict v = frame_decode(p->rx, p->rx_len, ATT_MAX_FRAME, fr, &flen, &why);
    if (v != V_OK) {
        fprintf(stderr, "  the program sent a bad frame (type 0x%02x, verdict %d, %s)\n", hdr[0], (int)v,
                why ? why : "-");
        return -1;
    }
    return 1;
}

/* Receives a frame that must be of `type`; false (and a failure) otherwise. */
static inline bool h_expect(struct h_peer *p, uint8_t type, struct frame *fr)
{
    int r = h_recv(p, fr);
    if (r != 1 || fr->type != type) {
        fprintf(stderr, "  expected a %s frame, got %s\n", layout_of(type)->name,
                r == 1 ? (fr->layout ? fr->layout->name : "an unknown type") : r == 0 ? "end of file" : "an error");
        h_failures++;
        h_abort(p);
        return false;
    }
    if (type != T_LOG && type != T_ERROR) {
        if (fr->corr == 0 || fr->corr <= p->last_corr) {
            fprintf(stderr, "  corr %lu is not fresh (last %lu)\n", (unsigned long)fr->corr,
                    (unsigned long)p->last_corr);
            h_failures++;
        }
        p->last_corr = fr->corr;
    }
    return true;
}

/* The program must close the channel now, having sent nothing more. */
static inline void h_expect_eof(struct h_peer *p)
{
    struct frame fr;
    int r = h_recv(p, &fr);
    if (r != 0) {
        fprintf(stderr, "  expected the program to close the channel, got %s\n",
                r == 1 ? (fr.layout ? fr.layout->name : "an unknown frame") : "an error");
        h_failures++;
        h_abort(p);
    }
}

static inline bool h_send_raw(int fd, const void *data, size_t len)
{
    bool ok = write_all(fd, data, len);
    if (!ok) {
        fprintf(stderr, "  writing to the program failed: %s\n", strerror(errno));
        h_failures++;
    }
    return ok;
}

static inline bool h_send(int fd, uint8_t type, const struct field *f)
{
    struct buf b = {0};
    enum encode_result er = frame_encode(type, f, ATT_MAX_FRAME, &b);
    bool ok = er == E_OK && h_send_raw(fd, b.p, b.len);
    buf_free(&b);
    return ok;
}

static inline bool h_send2(int fd, uint8_t type, uint32_t corr, const void *data, size_t len)
{
    struct field f[2] = {{corr, NULL, 0}, {0, data, len}};
    return h_send(fd, type, f);
}

static inline bool h_send_nack(int fd, uint32_t corr, const char *code, const char *reason)
{
    struct field f[3] = {{corr, NULL, 0},
                         {0, (const unsigned char *)code, strlen(code)},
                         {0, (const unsigned char *)reason, strlen(reason)}};
    return h_send(fd, T_NACK, f);
}

/* Checks a HELLO as the launcher would and returns the certificate it would issue. */
static inline X509 *h_certify(struct h_world *w, const struct frame *hello)
{
    const unsigned char *p = hello->f[1].data;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)hello->f[1].len);
    X509 *cert = NULL;
    char group[32] = "";
    EVP_PKEY *pub = req ? X509_REQ_get0_pubkey(req) : NULL;
    CHECK(req != NULL);
    CHECK(p == hello->f[1].data + hello->f[1].len);
    CHECK(pub && X509_REQ_verify(req, pub) == 1); /* proof of possession */
    CHECK(pub && EVP_PKEY_get_group_name(pub, group, sizeof group, NULL) && strcmp(group, "prime256v1") == 0);
    CHECK(hello->f[2].len == strlen(ATT_SDK_VERSION) &&
          memcmp(hello->f[2].data, ATT_SDK_VERSION, hello->f[2].len) == 0);
#ifndef __CHERI_PURE_CAPABILITY__
    CHECK(hello->f[3].len == 0); /* no CHERI bounds off CHERI */
#endif
    if (pub)
        cert = h_issue(w->inter, w->inter_key, pub, "test program", "run-1", &H_LEAF);
    X509_REQ_free(req);
    return cert;
}

/* Plays the launcher's side of HELLO: CERT with the run certificate, intermediate, root. */
static inline bool h_hello(struct h_peer *p, struct h_world *w)
{
    struct frame fr;
    if (!h_expect(p, T_HELLO, &fr))
        return false;
    p->run_cert = h_certify(w, &fr);
    if (!p->run_cert)
        return false;
    char *chain = h_chain(p->run_cert, w->inter, w->root);
    bool ok = chain && h_send2(p->fd, T_CERT, fr.corr, chain, strlen(chain));
    free(chain);
    return ok;
}

/* Answers a SERVICE_CERT for `service` with `chain` (NULL: the service's real chain). */
static inline bool h_service_cert(struct h_peer *p, struct h_world *w, const char *service, const char *chain)
{
    struct frame fr;
    if (!h_expect(p, T_SERVICE_CERT, &fr))
        return false;
    bool named = fr.f[1].len == strlen(service) && memcmp(fr.f[1].data, service, fr.f[1].len) == 0;
    CHECK(named);
    struct h_service *s = h_service(w, service, strlen(service));
    if (!chain)
        chain = s ? s->chain_pem : "";
    return h_send2(p->fd, T_CERT, fr.corr, chain, strlen(chain));
}

/* ------------------------------------------------------------------------------------------ */
/* The services' side of the envelopes                                                        */

/* What a service found in an attested request. */
struct h_request {
    char *op, *service, *resource, *nonce;
    char *timestamp; /* JSON number text */
    char *v;
    unsigned char *payload;
    size_t payload_len;
};

static inline void h_request_free(struct h_request *r)
{
    free(r->op);
    free(r->service);
    free(r->resource);
    free(r->nonce);
    free(r->timestamp);
    free(r->v);
    free(r->payload);
    memset(r, 0, sizeof *r);
}

static inline char *h_json_field(const char *doc, size_t len, const char *path, att_json_type want)
{
    att_json_type t;
    char *text = NULL;
    if (att_json_get(doc, len, path, &t, &text) != ATT_OK || t != want) {
        fprintf(stderr, "  request body: \"%s\" missing or of the wrong type\n", path);
        free(text);
        return NULL;
    }
    return text;
}

/* Opens a request as service `s` would: decrypt with its key, verify with the run certificate
 * alone, parse the body. Prints why and returns false when any step fails. */
static inline bool h_open_request(struct h_service *s, X509 *run_cert, const unsigned char *der, size_t len,
                           struct h_request *out)
{
    memset(out, 0, sizeof *out);
    bool ok = false;
    CMS_ContentInfo *env = cms_from_der(der, len), *sd = NULL;
    BIO *mid = BIO_new(BIO_s_mem()), *content = BIO_new(BIO_s_mem());
    STACK_OF(X509) *signer = sk_X509_new_null();
    struct buf payload = {0};
    char *p;
    long n;
    if (!env || OBJ_obj2nid(CMS_get0_type(env)) != NID_id_smime_ct_authEnvelopedData) {
        fprintf(stderr, "  request: not AuthEnvelopedData\n");
        goto out;
    }
    /* One ECDH recipient whose X9.63 KDF uses SHA-256 (PROTOCOL.md, Envelopes). */
    STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(env);
    X509_ALGOR *kea = NULL;
    const ASN1_OBJECT *kea_oid = NULL;
    if (sk_CMS_RecipientInfo_num(ris) != 1 ||
        CMS_RecipientInfo_type(sk_CMS_RecipientInfo_value(ris, 0)) != CMS_RECIPINFO_AGREE ||
        CMS_RecipientInfo_kari_get0_alg(sk_CMS_RecipientInfo_value(ris, 0), &kea, NULL) != 1 ||
        (X509_ALGOR_get0(&kea_oid, NULL, NULL, kea), OBJ_obj2nid(kea_oid)) !=
            NID_dhSinglePass_stdDH_sha256kdf_scheme) {
        fprintf(stderr, "  request: expected one ECDH recipient with the SHA-256 KDF\n");
        goto out;
    }
    if (CMS_decrypt(env, s->key, s->cert, NULL, mid, CMS_BINARY) != 1) {
        fprintf(stderr, "  request: does not decrypt with the %s key\n", s->name);
        goto out;
    }
    n = BIO_get_mem_data(mid, &p);
    sd = cms_from_der((unsigned char *)p, (size_t)n);
    if (!sd || OBJ_obj2nid(CMS_get0_type(sd)) != NID_pkcs7_signed || CMS_is_detached(sd)) {
        fprintf(stderr, "  request: not attached SignedData\n");
        goto out;
    }
    STACK_OF(X509) *inside = CMS_get1_certs(sd);
    if (inside && sk_X509_num(inside) > 0) {
        fprintf(stderr, "  request: SignedData carries certificates\n");
        sk_X509_pop_free(inside, X509_free);
        goto out;
    }
    sk_X509_pop_free(inside, X509_free);
    STACK_OF(CMS_SignerInfo) *signers = CMS_get0_SignerInfos(sd);
    if (sk_CMS_SignerInfo_num(signers) != 1 ||
        CMS_signed_get_attr_count(sk_CMS_SignerInfo_value(signers, 0)) <= 0) {
        fprintf(stderr, "  request: expected one signer with signed attributes\n");
        goto out;
    }
    if (!sk_X509_push(signer, run_cert) ||
        CMS_verify(sd, signer, NULL, NULL, content, CMS_BINARY | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        fprintf(stderr, "  request: signature does not verify with the run certificate\n");
        goto out;
    }
    n = BIO_get_mem_data(content, &p);
    out->v = h_json_field(p, (size_t)n, "v", ATT_JSON_NUMBER);
    out->op = h_json_field(p, (size_t)n, "op", ATT_JSON_STRING);
    out->service = h_json_field(p, (size_t)n, "service", ATT_JSON_STRING);
    out->resource = h_json_field(p, (size_t)n, "resource", ATT_JSON_STRING);
    out->nonce = h_json_field(p, (size_t)n, "nonce", ATT_JSON_STRING);
    out->timestamp = h_json_field(p, (size_t)n, "timestamp", ATT_JSON_NUMBER);
    char *b64 = h_json_field(p, (size_t)n, "payload", ATT_JSON_STRING);
    if (!out->v || !out->op || !out->service || !out->resource || !out->nonce || !out->timestamp || !b64) {
        free(b64);
        goto out;
    }
    bool decoded = base64_decode(b64, strlen(b64), &payload);
    free(b64);
    if (!decoded) {
        fprintf(stderr, "  request: payload is not base64\n");
        goto out;
    }
    out->payload = buf_take(&payload, &out->payload_len);
    ok = out->payload != NULL;
out:
    buf_free(&payload);
    sk_X509_free(signer);
    BIO_free(mid);
    BIO_free(content);
    CMS_ContentInfo_free(sd);
    CMS_ContentInfo_free(env);
    if (!ok)
        h_request_free(out);
    return ok;
}

/* A response body as the services write it: canonical JSON, sorted keys. */
static inline char *h_response_body(const char *nonce, const char *service, const char *resource, const char *status,
                             const void *payload, size_t len)
{
    struct buf b = {0};
    buf_adds(&b, "{\"nonce\":");
    json_quote(&b, (const unsigned char *)nonce, strlen(nonce));
    buf_adds(&b, ",\"payload\":\"");
    base64_encode(payload, len, &b);
    buf_adds(&b, "\",\"resource\":");
    json_quote(&b, (const unsigned char *)resource, strlen(resource));
    buf_adds(&b, ",\"service\":");
    json_quote(&b, (const unsigned char *)service, strlen(service));
    buf_adds(&b, ",\"status\":");
    json_quote(&b, (const unsigned char *)status, strlen(status));
    buf_adds(&b, ",\"v\":1}");
    return (char *)buf_take(&b, NULL);
}

/* Signs `body` with key/cert and, unless `to` is NULL, encrypts that to `to`: DER in *out.
 * The SignedData carries no certificate, unless with_cert. */
static inline bool h_seal_ex(EVP_PKEY *key, X509 *cert, X509 *to, const char *body, bool with_cert, struct buf *out)
{
    const int flags = CMS_BINARY | CMS_NOSMIMECAP | (with_cert ? 0 : CMS_NOCERTS);
    BIO *in = BIO_new_mem_buf(body, (int)strlen(body)), *in2 = NULL;
    CMS_ContentInfo *sd = CMS_sign(cert, key, NULL, in, flags), *env = NULL;
    STACK_OF(X509) *recips = sk_X509_new_null();
    struct buf signed_der = {0};
    EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    bool ok = sd && cms_to_der(sd, to ? &signed_der : out);
    if (ok && to) {
        in2 = BIO_new_mem_buf(signed_der.p, (int)signed_der.len);
        ok = in2 && sk_X509_push(recips, to) && (env = CMS_encrypt(recips, in2, gcm, CMS_BINARY)) &&
             cms_to_der(env, out);
    }
    if (!ok)
        ERR_print_errors_fp(stderr);
    EVP_CIPHER_free(gcm);
    buf_free(&signed_der);
    sk_X509_free(recips);
    CMS_ContentInfo_free(env);
    CMS_ContentInfo_free(sd);
    BIO_free(in2);
    BIO_free(in);
    return ok;
}

static inline bool h_seal(EVP_PKEY *key, X509 *cert, X509 *to, const char *body, struct buf *out)
{
    return h_seal_ex(key, cert, to, body, false, out);
}

/* Opens a READ or WRITE frame as the named service would, checking what the SDK promises: the frame names the service and the resource's collection, the body matches
 * the frame and its nonce is fresh-looking, its timestamp current. */
static inline bool h_open_frame(struct h_peer *p, struct h_world *w, const struct frame *fr, struct h_request *req)
{
    uint8_t type = fr->type;
    struct h_service *s = h_service(w, (const char *)fr->f[1].data, fr->f[1].len);
    if (!s) {
        fprintf(stderr, "  request for an unknown service\n");
        h_failures++;
        h_abort(p);
        return false;
    }
    if (!h_open_request(s, p->run_cert, fr->f[3].data, fr->f[3].len, req)) {
        h_failures++;
        h_abort(p);
        return false;
    }
    CHECK(strcmp(req->v, "1") == 0);
    CHECK(strcmp(req->op, type == T_READ ? "read" : "write") == 0);
    CHECK(strcmp(req->service, s->name) == 0);
    size_t clen = strcspn(req->resource, "/");
    CHECK(fr->f[2].len == clen && memcmp(fr->f[2].data, req->resource, clen) == 0);
    CHECK(strlen(req->nonce) == 32 && strspn(req->nonce, "0123456789abcdef") == 32);
    long long ts = strtoll(req->timestamp, NULL, 10);
    long long now = (long long)time(NULL);
    CHECK(ts > now - 600 && ts <= now + 1);
    return true;
}

static inline bool h_take_request(struct h_peer *p, struct h_world *w, uint8_t type, struct frame *fr,
                           struct h_request *req)
{
    return h_expect(p, type, fr) && h_open_frame(p, w, fr, req);
}

/* Answers a request as its service would, with `payload`; an empty ACK when payload is NULL
 * for a WRITE. */
static inline bool h_answer(struct h_peer *p, struct h_world *w, const struct frame *fr, const struct h_request *req,
                     const char *payload)
{
    uint8_t type = fr->type == T_READ ? T_DATA : T_ACK;
    if (!payload)
        return h_send2(p->fd, type, fr->corr, "", 0);
    struct h_service *s = h_service(w, req->service, strlen(req->service));
    char *body = h_response_body(req->nonce, s->name, req->resource, "ok", payload, strlen(payload));
    struct buf der = {0};
    bool ok = body && h_seal(s->key, s->cert, p->run_cert, body, &der) && h_send2(p->fd, type, fr->corr, der.p, der.len);
    free(body);
    buf_free(&der);
    return ok;
}

/* Runs `child` in a forked process on one end of a socketpair while the caller plays the
 * launcher on the other end with `parent`. The child's exit status is its failure count. */
typedef int (*h_child_fn)(int fd);
typedef void (*h_parent_fn)(struct h_peer *p, struct h_world *w);

static inline int h_child_exit_status(pid_t pid)
{
    int status = 0;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 || waited >= H_WAIT_MS) {
            fprintf(stderr, "  the child did not exit; killing it\n");
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "  the child died of signal %d\n", WTERMSIG(status));
        return -1;
    }
    return WEXITSTATUS(status);
}

static inline int h_run(const char *name, struct h_world *w, h_child_fn child, h_parent_fn parent)
{
    int before = h_failures;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("socketpair");
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL); /* the SDK must not die of it */
        close(sv[0]);
        h_failures = 0;
        int fails = child(sv[1]);
        h_world_free(w);
        exit(fails > 100 ? 100 : fails);
    }
    close(sv[1]);
    struct h_peer p = {sv[0], NULL, 0, NULL, 0};
    parent(&p, w);
    h_peer_free(&p);
    int st = h_child_exit_status(pid);
    if (st != 0) {
        fprintf(stderr, "  the child reported %d failure(s)\n", st);
        h_failures++;
    }
    bool ok = h_failures == before;
    printf("%s - %s\n", ok ? "ok" : "FAIL", name);
    fflush(stdout);
    return ok ? 0 : 1;
}
