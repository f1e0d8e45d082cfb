/*
 * test_sdk.c: the SDK against a launcher and services played by this process.
 *
 * Each scenario forks: the child is the integration process (the SDK's public API only), the
 * parent plays the launcher on the other end of a socketpair and the services behind it, and
 * checks every frame the child sends. Usage: test_sdk PKI_DIR (the services CA whose
 * certificate is compiled into this binary as its anchor).
 */
#include "harness.c"

static const char SALE[] = "{\"sale_id\":42,\"total\":\"189.90\",\"currency\":\"USD\"}";
static const char TRIP[] = "{\"origin\":\"Acme Store\",\"destination\":\"Rua A, 20\"}";
static const char TRIP_REPLY[] = "{\"trip_id\":7,\"taxi_plate\":\"ABC1D23\",\"driver_name\":\"Jo\xc3\xa3o\"}";
static const char PROOF[] = "1. Key[root 3f2a9c01] is-trusted   (policy: trusted_root \"dev\")\n"
                            "8. FAILED Measurement[e98a1234] is-trusted-for read store:sales/last: no allow rule\n"
                            "=> DENIED at step 8 (measurement)";

static att_ctx *child_init(int fd)
{
    att_ctx *ctx = NULL;
    CHECK_ST(ctx, att_init_fd(&ctx, fd), ATT_OK);
    return ctx;
}

/* A read of store:sales/last that must succeed with SALE. */
static void child_read_ok(att_ctx *ctx)
{
    unsigned char *out = NULL;
    size_t len = 0;
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_OK);
    CHECK(out && len == strlen(SALE) && memcmp(out, SALE, len) == 0 && out[len] == '\0');
    att_free(out);
}

/* The parent's side of child_read_ok. */
static void parent_read_ok(struct h_peer *p, struct h_world *w)
{
    struct frame fr;
    struct h_request req;
    if (h_take_request(p, w, T_READ, &fr, &req)) {
        CHECK(strcmp(req.resource, "sales/last") == 0);
        h_answer(p, w, &fr, &req, SALE);
        h_request_free(&req);
    }
}

/* --- HELLO, reads, writes, LOG, the certificate cache ------------------------------------- */

static int child_happy(int fd)
{
    att_ctx *ctx = child_init(fd);
    const char *chain = att_chain_pem(ctx);
    int certs = 0;
    for (const char *at = chain; at && (at = strstr(at, "BEGIN CERTIFICATE")); at++)
        certs++;
    CHECK(certs == 3);
    CHECK_CONTAINS(att_certificate_pem(ctx), "-----BEGIN CERTIFICATE-----");
    CHECK(att_certificate_subject(ctx) && strcmp(att_certificate_subject(ctx), "O=test program, CN=run-1") == 0);
    CHECK_ST(ctx, att_log(ctx, ATT_LOG_INFO, "reading %d sale", 1), ATT_OK);

    child_read_ok(ctx);
    unsigned char *out = NULL;
    size_t len = 0;
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", "{\"limit\":1}", &out, &len), ATT_OK);
    CHECK(out && strcmp((char *)out, SALE) == 0);
    att_free(out);

    CHECK_ST(ctx, att_write(ctx, "taxi", "trips", TRIP, strlen(TRIP), &out, &len), ATT_OK);
    CHECK(out && len == strlen(TRIP_REPLY) && strcmp((char *)out, TRIP_REPLY) == 0);
    att_free(out);

    /* An ACK without a reply from the service. */
    out = (unsigned char *)"sentinel";
    CHECK_ST(ctx, att_write(ctx, "messaging", "messages", "{}", 2, &out, &len), ATT_OK);
    CHECK(out == NULL && len == 0);
    /* The reply may be discarded. */
    CHECK_ST(ctx, att_write(ctx, "messaging", "messages", "{}", 2, NULL, NULL), ATT_OK);

    /* An empty payload; a resource deeper than its collection, every allowed character. */
    CHECK_ST(ctx, att_read(ctx, "messaging", "replies/+55.99_~@=:-Zz/x", NULL, &out, &len), ATT_OK);
    CHECK(out && len == 0 && out[0] == '\0');
    att_free(out);
    CHECK(att_nack_code(ctx) == NULL);
    att_close(ctx);
    return h_failures;
}

static void parent_happy(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    struct frame fr;
    struct h_request req;
    if (h_expect(p, T_LOG, &fr)) {
        CHECK(fr.corr == 0 && fr.f[1].num == ATT_LOG_INFO);
        CHECK(fr.f[2].len == 14 && memcmp(fr.f[2].data, "reading 1 sale", 14) == 0);
    }
    h_service_cert(p, w, "store", NULL);
    parent_read_ok(p, w);
    /* The second read reuses the verified certificate: no SERVICE_CERT. */
    if (h_take_request(p, w, T_READ, &fr, &req)) {
        CHECK(req.payload_len == 11 && memcmp(req.payload, "{\"limit\":1}", 11) == 0);
        h_answer(p, w, &fr, &req, SALE);
        h_request_free(&req);
    }
    h_service_cert(p, w, "taxi", NULL);
    if (h_take_request(p, w, T_WRITE, &fr, &req)) {
        CHECK(strcmp(req.resource, "trips") == 0);
        CHECK(req.payload_len == strlen(TRIP) && memcmp(req.payload, TRIP, req.payload_len) == 0);
        h_answer(p, w, &fr, &req, TRIP_REPLY);
        h_request_free(&req);
    }
    h_service_cert(p, w, "messaging", NULL);
    for (int i = 0; i < 2; i++) {
        if (h_take_request(p, w, T_WRITE, &fr, &req)) {
            h_answer(p, w, &fr, &req, NULL);
            h_request_free(&req);
        }
    }
    if (h_take_request(p, w, T_READ, &fr, &req)) {
        CHECK(strcmp(req.resource, "replies/+55.99_~@=:-Zz/x") == 0);
        CHECK(fr.f[2].len == 7 && memcmp(fr.f[2].data, "replies", 7) == 0);
        h_answer(p, w, &fr, &req, "");
        h_request_free(&req);
    }
    h_expect_eof(p);
}

/* --- responses the SDK must reject ---------------------------------------------------------- */

enum bad_response {
    BAD_FLIP_MIDDLE,
    BAD_FLIP_TAG,
    BAD_FLIP_EVERY_64TH,
    BAD_OTHER_NONCE,
    BAD_OTHER_SERVICE,
    BAD_OTHER_RESOURCE,
    BAD_STATUS,
    BAD_VERSION,
    BAD_SIGNER,
    BAD_SIGNER_CERT_INSIDE,
    BAD_SIGNATURE_BYTES,
    BAD_CONTENT_ALTERED,
    BAD_NOT_ENCRYPTED,
    BAD_OTHER_RECIPIENT,
    BAD_BODY_NOT_JSON,
    BAD_PAYLOAD_NOT_BASE64,
    BAD_MISSING_NONCE,
    BAD_EXTRA_KEY,
    BAD_EMPTY_DATA,
    BAD_NOT_DER,
    BAD_COUNT
};

/* What att_strerror must say for each. */
static const char *const BAD_EXPECT[BAD_COUNT] = {
    [BAD_FLIP_MIDDLE] = "read store:sales",
    [BAD_FLIP_TAG] = "does not decrypt with the run key",
    [BAD_FLIP_EVERY_64TH] = "read store:sales",
    [BAD_OTHER_NONCE] = "not this request's",
    [BAD_OTHER_SERVICE] = "from service \"taxi\", expected \"store\"",
    [BAD_OTHER_RESOURCE] = "another resource (collection \"sales\"",
    [BAD_STATUS] = "status \"error\", expected \"ok\"",
    [BAD_VERSION] = "version 2, expected 1",
    [BAD_SIGNER] = "signature does not verify with the certificate of service \"store\"",
    [BAD_SIGNER_CERT_INSIDE] = "signature does not verify with the certificate of service \"store\"",
    [BAD_SIGNATURE_BYTES] = "signature does not verify with the certificate of service \"store\"",
    [BAD_CONTENT_ALTERED] = "signature does not verify with the certificate of service \"store\"",
    [BAD_NOT_ENCRYPTED] = "expected AuthEnvelopedData",
    [BAD_OTHER_RECIPIENT] = "does not decrypt with the run key",
    [BAD_BODY_NOT_JSON] = "not valid JSON",
    [BAD_PAYLOAD_NOT_BASE64] = "payload is not valid base64",
    [BAD_MISSING_NONCE] = "\"nonce\" is missing",
    [BAD_EXTRA_KEY] = "has 7 keys, expected exactly v, nonce, service, resource, status and payload",
    [BAD_EMPTY_DATA] = "DATA without a response",
    [BAD_NOT_DER] = "not a DER CMS structure",
};

/*
 * What a relay holding only public certificates can forge: a SignedData naming the service as
 * its signer, encrypted to the run certificate, whose signature (or signed content) is not the
 * service's. Made by signing genuinely, then altering the signature's last byte or the content.
 */
static bool h_seal_forged(EVP_PKEY *key, X509 *cert, X509 *to, const char *body, bool alter_content,
                          struct buf *out)
{
    struct buf genuine = {0}, forged = {0};
    bool ok = h_seal(key, cert, NULL, body, &genuine);
    CMS_ContentInfo *sd = ok ? cms_from_der(genuine.p, genuine.len) : NULL;
    ok = sd != NULL;
    if (ok && alter_content) {
        /* Other content under the same signed attributes: their digest no longer matches. */
        ASN1_OCTET_STRING **content = CMS_get0_content(sd);
        ok = content && *content && ASN1_STRING_set(*content, "[]", 2);
    } else if (ok) {
        CMS_SignerInfo *si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(sd), 0);
        ASN1_OCTET_STRING *sig = si ? CMS_SignerInfo_get0_signature(si) : NULL;
        int n = sig ? ASN1_STRING_length(sig) : 0;
        unsigned char bytes[256];
        ok = n > 0 && (size_t)n <= sizeof bytes;
        if (ok) {
            memcpy(bytes, ASN1_STRING_get0_data(sig), (size_t)n);
            bytes[n - 1] ^= 0x01;
            ok = ASN1_STRING_set(sig, bytes, n);
        }
    }
    ok = ok && cms_to_der(sd, &forged);
    CMS_ContentInfo_free(sd);
    if (ok) { /* encrypt the forgery as h_seal would */
        EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
        BIO *in = BIO_new_mem_buf(forged.p, (int)forged.len);
        STACK_OF(X509) *recips = sk_X509_new_null();
        CMS_ContentInfo *env = NULL;
        ok = gcm && in && recips && sk_X509_push(recips, to) && (env = CMS_encrypt(recips, in, gcm, CMS_BINARY)) &&
             cms_to_der(env, out);
        CMS_ContentInfo_free(env);
        sk_X509_free(recips);
        BIO_free(in);
        EVP_CIPHER_free(gcm);
    }
    buf_free(&genuine);
    buf_free(&forged);
    return ok;
}

static int child_bad_responses(int fd)
{
    att_ctx *ctx = child_init(fd);
    for (int i = 0; i < BAD_COUNT; i++) {
        unsigned char *out = (unsigned char *)"sentinel";
        size_t len = 99;
        CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_RESPONSE);
        CHECK(out == NULL && len == 0);
        CHECK_CONTAINS(att_strerror(ctx, ATT_E_RESPONSE), BAD_EXPECT[i]);
    }
    child_read_ok(ctx); /* a rejected answer does not end the channel */
    att_close(ctx);
    return h_failures;
}

static void parent_bad_responses(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    h_service_cert(p, w, "store", NULL);
    struct h_service *store = &w->svc[0], *taxi = &w->svc[1];
    for (int i = 0; i < BAD_COUNT; i++) {
        struct frame fr;
        struct h_request req;
        if (!h_take_request(p, w, T_READ, &fr, &req))
            return;
        const char *nonce = req.nonce, *service = "store", *resource = req.resource, *status = "ok";
        EVP_PKEY *key = store->key;
        X509 *cert = store->cert, *to = p->run_cert;
        char *body = NULL;
        switch ((enum bad_response)i) {
        case BAD_OTHER_NONCE: nonce = "00112233445566778899aabbccddeeff"; break;
        case BAD_OTHER_SERVICE: service = "taxi"; break;
        case BAD_OTHER_RESOURCE: resource = "sales/first"; break;
        case BAD_STATUS: status = "error"; break;
        case BAD_SIGNER: key = taxi->key, cert = taxi->cert; break;
        case BAD_NOT_ENCRYPTED: to = NULL; break;
        case BAD_OTHER_RECIPIENT: to = store->cert; break;
        case BAD_VERSION:
        case BAD_BODY_NOT_JSON:
        case BAD_PAYLOAD_NOT_BASE64:
        case BAD_MISSING_NONCE:
        case BAD_EXTRA_KEY: {
            struct buf b = {0};
            if (i == BAD_BODY_NOT_JSON)
                buf_printf(&b, "{\"nonce\":\"%s\",", req.nonce);
            else if (i == BAD_EXTRA_KEY)
                buf_printf(&b, "{\"nonce\":\"%s\",\"payload\":\"\",\"resource\":\"sales/last\",\"service\":"
                               "\"store\",\"status\":\"ok\",\"until\":\"later\",\"v\":1}",
                           req.nonce);
            else if (i == BAD_MISSING_NONCE)
                buf_printf(&b, "{\"payload\":\"\",\"resource\":\"sales/last\",\"service\":\"store\",\"status\":\"ok\",\"v\":1}");
            else
                buf_printf(&b, "{\"nonce\":\"%s\",\"payload\":\"%s\",\"resource\":\"sales/last\",\"service\":"
                               "\"store\",\"status\":\"ok\",\"v\":%d}",
                           req.nonce, i == BAD_PAYLOAD_NOT_BASE64 ? "e30" : "e30=", i == BAD_VERSION ? 2 : 1);
            body = (char *)buf_take(&b, NULL);
            break;
        }
        default: break;
        }
        if (!body)
            body = h_response_body(nonce, service, resource, status, SALE, strlen(SALE));
        struct buf der = {0};
        if (i == BAD_SIGNER_CERT_INSIDE) /* a relay's own key, its certificate inside */
            CHECK(body && h_seal_ex(w->rogue_key, w->rogue_ca, to, body, true, &der));
        else if (i == BAD_SIGNATURE_BYTES || i == BAD_CONTENT_ALTERED)
            CHECK(body && h_seal_forged(key, cert, to, body, i == BAD_CONTENT_ALTERED, &der));
        else
            CHECK(body && h_seal(key, cert, to, body, &der));
        switch ((enum bad_response)i) {
        case BAD_FLIP_MIDDLE: der.p[der.len / 2] ^= 0x01; break;
        case BAD_FLIP_TAG: der.p[der.len - 1] ^= 0x80; break;
        case BAD_FLIP_EVERY_64TH:
            for (size_t k = 64; k < der.len; k += 64)
                der.p[k] ^= 0x10;
            break;
        case BAD_EMPTY_DATA: der.len = 0; break;
        case BAD_NOT_DER: memset(der.p, 0x5a, der.len); break;
        default: break;
        }
        h_send2(p->fd, T_DATA, fr.corr, der.p, der.len);
        buf_free(&der);
        free(body);
        h_request_free(&req);
    }
    parent_read_ok(p, w);
    h_expect_eof(p);
}

/* --- replay --------------------------------------------------------------------------------- */

static int child_replay(int fd)
{
    att_ctx *ctx = child_init(fd);
    child_read_ok(ctx);
    unsigned char *out;
    size_t len;
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_RESPONSE);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_RESPONSE), "a replayed or misrouted response");
    att_close(ctx);
    return h_failures;
}

static void parent_replay(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    h_service_cert(p, w, "store", NULL);
    struct frame fr;
    struct h_request req;
    if (!h_take_request(p, w, T_READ, &fr, &req))
        return;
    struct h_service *store = &w->svc[0];
    char *body = h_response_body(req.nonce, "store", req.resource, "ok", SALE, strlen(SALE));
    struct buf der = {0};
    CHECK(body && h_seal(store->key, store->cert, p->run_cert, body, &der));
    h_send2(p->fd, T_DATA, fr.corr, der.p, der.len);
    h_request_free(&req);
    /* The same genuine envelope again, as the answer to the next read. */
    if (h_take_request(p, w, T_READ, &fr, &req)) {
        h_send2(p->fd, T_DATA, fr.corr, der.p, der.len);
        h_request_free(&req);
    }
    buf_free(&der);
    free(body);
    h_expect_eof(p);
}

/* --- service certificates the SDK must refuse ---------------------------------------------- */

enum bad_cert { CERT_ROGUE_CA, CERT_ROGUE_LEAF_ONLY, CERT_OTHER_SERVICE, CERT_EXPIRED, CERT_NO_KEY_AGREEMENT, CERT_IS_CA, CERT_NOT_PEM, CERT_COUNT };

static const char *const CERT_EXPECT[CERT_COUNT] = {
    [CERT_ROGUE_CA] = "is not trusted: self-signed certificate in certificate chain (certificate at depth 1, "
                      "subject \"O=attestable tests, CN=rogue services CA\"",
    [CERT_ROGUE_LEAF_ONLY] = "is not trusted: unable to get local issuer certificate (certificate at depth 0, "
                             "subject \"O=attestable tests, CN=taxi\"",
    [CERT_OTHER_SERVICE] = "names CN=store (expected CN=taxi)",
    [CERT_EXPIRED] = "certificate has expired",
    [CERT_NO_KEY_AGREEMENT] = "does not allow both digitalSignature and keyAgreement",
    [CERT_IS_CA] = "is a CA certificate",
    [CERT_NOT_PEM] = "is not PEM",
};

static int child_bad_certs(int fd)
{
    att_ctx *ctx = child_init(fd);
    for (int i = 0; i < CERT_COUNT; i++) {
        unsigned char *reply = NULL;
        size_t len = 0;
        CHECK_ST(ctx, att_write(ctx, "taxi", "trips", TRIP, strlen(TRIP), &reply, &len), ATT_E_SERVICE_CERT);
        CHECK_CONTAINS(att_strerror(ctx, ATT_E_SERVICE_CERT), CERT_EXPECT[i]);
        CHECK(reply == NULL);
    }
    att_close(ctx);
    return h_failures;
}

static void parent_bad_certs(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    EVP_PKEY *key = h_keygen();
    for (int i = 0; i < CERT_COUNT; i++) {
        struct h_cert_opts o = H_LEAF;
        X509 *issuer = w->svc_ca;
        EVP_PKEY *issuer_key = w->svc_ca_key;
        const char *cn = "taxi";
        char *chain = NULL;
        switch ((enum bad_cert)i) {
        case CERT_ROGUE_CA:
        case CERT_ROGUE_LEAF_ONLY: issuer = w->rogue_ca, issuer_key = w->rogue_key; break;
        case CERT_OTHER_SERVICE: chain = strdup(w->svc[0].chain_pem); break;
        case CERT_EXPIRED: o.not_before = -7200, o.not_after = -3600; break;
        case CERT_NO_KEY_AGREEMENT: o.key_usage = "critical,digitalSignature"; break;
        case CERT_IS_CA: o.ca = true, o.key_usage = "critical,digitalSignature,keyAgreement,keyCertSign"; break;
        case CERT_NOT_PEM: chain = strdup("MIIB this is not PEM"); break;
        default: break;
        }
        if (!chain) {
            X509 *x = h_issue(issuer, issuer_key, key, "attestable tests", cn, &o);
            chain = h_chain(x, i == CERT_ROGUE_LEAF_ONLY ? NULL : issuer, NULL);
            X509_free(x);
        }
        h_service_cert(p, w, "taxi", chain);
        free(chain);
    }
    EVP_PKEY_free(key);
    /* Nothing was ever encrypted to those certificates: no WRITE. */
    h_expect_eof(p);
}

/* --- NACK ------------------------------------------------------------------------------------ */

static int child_nack(int fd)
{
    att_ctx *ctx = child_init(fd);
    unsigned char *out;
    size_t len;
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_NACK);
    CHECK(att_nack_code(ctx) && strcmp(att_nack_code(ctx), "service_denied") == 0);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_NACK), "read store:sales: the launcher refused (service_denied)");
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_NACK), PROOF);
    /* Another status gets the generic text, not a stale detail. */
    CHECK(strcmp(att_strerror(ctx, ATT_E_CHANNEL), "the channel to the launcher failed or is closed") == 0);
    CHECK_ST(ctx, att_write(ctx, "nosuch", "x", "", 0, NULL, NULL), ATT_E_NACK);
    CHECK(att_nack_code(ctx) && strcmp(att_nack_code(ctx), "unknown_service") == 0);
    child_read_ok(ctx); /* the channel goes on */
    CHECK(att_nack_code(ctx) == NULL);
    att_close(ctx);
    return h_failures;
}

static void parent_nack(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    h_service_cert(p, w, "store", NULL);
    struct frame fr;
    struct h_request req;
    if (h_take_request(p, w, T_READ, &fr, &req)) {
        h_send_nack(p->fd, fr.corr, "service_denied", PROOF);
        h_request_free(&req);
    }
    if (h_expect(p, T_SERVICE_CERT, &fr))
        h_send_nack(p->fd, fr.corr, "unknown_service", "no service \"nosuch\" in the registry");
    parent_read_ok(p, w);
    h_expect_eof(p);
}

/* --- HELLO refused, or answered with someone else's certificate ---------------------------- */

static int child_hello_nack(int fd)
{
    att_ctx *ctx = NULL;
    CHECK_ST(ctx, att_init_fd(&ctx, fd), ATT_E_NACK);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_NACK), "HELLO: the launcher refused (bad_csr): the CSR is not P-256");
    CHECK(att_chain_pem(ctx) == NULL && att_certificate_pem(ctx) == NULL);
    unsigned char *out;
    size_t len;
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_CHANNEL);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_CHANNEL), "the channel to the launcher is closed");
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_CHANNEL), "bad_csr");
    att_close(ctx);
    return h_failures;
}

static void parent_hello_nack(struct h_peer *p, struct h_world *w)
{
    (void)w;
    struct frame fr;
    if (h_expect(p, T_HELLO, &fr))
        h_send_nack(p->fd, fr.corr, "bad_csr", "the CSR is not P-256");
    h_expect_eof(p);
}

static int child_foreign_cert(int fd)
{
    att_ctx *ctx = NULL;
    CHECK_ST(ctx, att_init_fd(&ctx, fd), ATT_E_CERT);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_CERT), "certifies another key");
    att_close(ctx);
    return h_failures;
}

static void parent_foreign_cert(struct h_peer *p, struct h_world *w)
{
    struct frame fr;
    if (!h_expect(p, T_HELLO, &fr))
        return;
    /* A valid chain, but for a key the program does not hold. */
    char *chain = h_chain(w->svc[0].cert, w->svc_ca, NULL);
    h_send2(p->fd, T_CERT, fr.corr, chain, strlen(chain));
    free(chain);
    h_expect_eof(p);
}

/* --- frames: unknown, oversized, malformed, misdirected ------------------------------------- */

static int child_unknown_frames(int fd)
{
    att_ctx *ctx = child_init(fd);
    child_read_ok(ctx);
    att_close(ctx);
    return h_failures;
}

static void parent_unknown_frames(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    h_service_cert(p, w, "store", NULL);
    struct frame fr, err;
    struct h_request req;
    if (!h_take_request(p, w, T_READ, &fr, &req))
        return;
    uint32_t corr = fr.corr;
    /* Type 0x42 with this call's corr, then 0x7f with an empty payload. */
    unsigned char unknown[] = {0x42, 0, 0, 0, 5, (unsigned char)(corr >> 24), (unsigned char)(corr >> 16),
                               (unsigned char)(corr >> 8), (unsigned char)corr, 'x'};
    h_send_raw(p->fd, unknown, sizeof unknown);
    if (h_expect(p, T_ERROR, &err)) {
        CHECK(err.corr == corr);
        CHECK(err.f[1].len == 23 && memcmp(err.f[1].data, "unknown frame type 0x42", 23) == 0);
    }
    h_send_raw(p->fd, "\x7f\0\0\0\0", 5);
    if (h_expect(p, T_ERROR, &err)) {
        CHECK(err.corr == 0);
        CHECK(err.f[1].len == 23 && memcmp(err.f[1].data, "unknown frame type 0x7f", 23) == 0);
    }
    /* The launcher's frame was received before the errors: answer the read now. */
    h_answer(p, w, &fr, &req, SALE);
    h_request_free(&req);
    h_expect_eof(p);
}

enum bad_frame { FRAME_OVERSIZED, FRAME_MALFORMED, FRAME_OTHER_CORR, FRAME_WRONG_TYPE, FRAME_COUNT };

static const char *const FRAME_EXPECT[FRAME_COUNT] = {
    [FRAME_OVERSIZED] = "announcing 16777217 bytes, more than the maximum of 16777216: channel closed",
    [FRAME_MALFORMED] = "malformed DATA frame (bytes are left over after the last field)",
    [FRAME_OTHER_CORR] = "while corr",
    [FRAME_WRONG_TYPE] = "answered ACK where DATA or NACK was expected",
};

/* Each fatal frame case runs in its own process: the SDK closes the channel after it. */
static enum bad_frame current_bad_frame;

static int child_bad_frame(int fd)
{
    att_ctx *ctx = child_init(fd);
    unsigned char *out;
    size_t len;
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_PROTOCOL);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_PROTOCOL), FRAME_EXPECT[current_bad_frame]);
    /* Later calls repeat why the channel closed. */
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_CHANNEL);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_CHANNEL), FRAME_EXPECT[current_bad_frame]);
    CHECK_ST(ctx, att_log(ctx, ATT_LOG_ERROR, "after"), ATT_E_CHANNEL);
    att_close(ctx);
    return h_failures;
}

static void parent_bad_frame(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    h_service_cert(p, w, "store", NULL);
    struct frame fr;
    struct h_request req;
    if (!h_take_request(p, w, T_READ, &fr, &req))
        return;
    h_request_free(&req);
    unsigned char b[16];
    switch (current_bad_frame) {
    case FRAME_OVERSIZED:
        b[0] = T_DATA;
        put_be32(b + 1, ATT_MAX_FRAME + 1);
        h_send_raw(p->fd, b, 5);
        break;
    case FRAME_MALFORMED: /* DATA: corr, an empty response, then a stray byte */
        b[0] = T_DATA;
        put_be32(b + 1, 9);
        put_be32(b + 5, fr.corr);
        put_be32(b + 9, 0);
        b[13] = 0;
        h_send_raw(p->fd, b, 14);
        break;
    case FRAME_OTHER_CORR: h_send2(p->fd, T_DATA, fr.corr + 1000, "", 0); break;
    case FRAME_WRONG_TYPE: h_send2(p->fd, T_ACK, fr.corr, "", 0); break;
    default: break;
    }
    h_expect_eof(p);
}

static int child_launcher_error(int fd)
{
    att_ctx *ctx = child_init(fd);
    unsigned char *out;
    size_t len;
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_PROTOCOL);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_PROTOCOL), "the launcher answered ERROR: confused");
    child_read_ok(ctx); /* an ERROR does not end the channel */
    att_close(ctx);
    return h_failures;
}

static void parent_launcher_error(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    h_service_cert(p, w, "store", NULL);
    struct frame fr;
    struct h_request req;
    if (h_take_request(p, w, T_READ, &fr, &req)) {
        h_send2(p->fd, T_ERROR, fr.corr, "confused", 8);
        h_request_free(&req);
    }
    parent_read_ok(p, w);
    h_expect_eof(p);
}

/* --- too large to send ------------------------------------------------------------------------ */

static int child_too_large(int fd)
{
    att_ctx *ctx = child_init(fd);
    size_t len = (size_t)ATT_MAX_FRAME / 4 * 3 + 1; /* its base64 alone exceeds a frame */
    unsigned char *data = calloc(1, len);
    CHECK(data != NULL);
    CHECK_ST(ctx, att_write(ctx, "taxi", "trips", data, len, NULL, NULL), ATT_E_TOO_LARGE);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_TOO_LARGE), "cannot fit in a frame of at most 16777216 bytes");
    free(data);
    CHECK_ST(ctx, att_log(ctx, ATT_LOG_DEBUG, "%s", "still here"), ATT_OK);
    att_close(ctx);
    return h_failures;
}

static void parent_too_large(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    struct frame fr;
    /* No SERVICE_CERT and no WRITE: the SDK refused before asking for anything. */
    if (h_expect(p, T_LOG, &fr))
        CHECK(fr.f[1].num == ATT_LOG_DEBUG && fr.f[2].len == 10);
    h_expect_eof(p);
}

/* --- the launcher goes away ----------------------------------------------------------------- */

static int child_closed_mid_call(int fd)
{
    att_ctx *ctx = child_init(fd);
    unsigned char *out;
    size_t len;
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_CHANNEL);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_CHANNEL), "the launcher closed the channel before answering");
    CHECK_ST(ctx, att_write(ctx, "store", "sales", "", 0, NULL, NULL), ATT_E_CHANNEL);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_CHANNEL), "the channel to the launcher is closed");
    att_close(ctx);
    return h_failures;
}

static void parent_closed_mid_call(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    h_service_cert(p, w, "store", NULL);
    struct frame fr;
    struct h_request req;
    if (h_take_request(p, w, T_READ, &fr, &req))
        h_request_free(&req);
    close(p->fd); /* mid-call */
    p->fd = -1;
}

static int child_closed_mid_frame(int fd)
{
    att_ctx *ctx = child_init(fd);
    unsigned char *out;
    size_t len;
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_CHANNEL);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_CHANNEL), "after 3 of 9 payload bytes");
    att_close(ctx);
    return h_failures;
}

static void parent_closed_mid_frame(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    h_service_cert(p, w, "store", NULL);
    struct frame fr;
    struct h_request req;
    if (h_take_request(p, w, T_READ, &fr, &req))
        h_request_free(&req);
    h_send_raw(p->fd, "\x82\0\0\0\x09\0\0\0", 8);
    close(p->fd);
    p->fd = -1;
}

static int child_closed_before_send(int fd)
{
    att_ctx *ctx = child_init(fd);
    /* Wait until the launcher's end is closed, then send into it: EPIPE, not SIGPIPE. */
    CHECK(h_wait_readable(fd));
    CHECK_ST(ctx, att_log(ctx, ATT_LOG_INFO, "anyone there?"), ATT_E_CHANNEL);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_CHANNEL), "sending LOG to the launcher failed: the launcher closed the channel");
    att_close(ctx);
    return h_failures;
}

static void parent_closed_before_send(struct h_peer *p, struct h_world *w)
{
    h_hello(p, w);
    close(p->fd);
    p->fd = -1;
}

/* --- arguments and start-up, no launcher needed --------------------------------------------- */

static int check_arguments(void)
{
    int before = h_failures;
    att_ctx *ctx = NULL;
    CHECK_ST(ctx, att_init(NULL), ATT_E_ARG);
    CHECK(att_read(NULL, "store", "x", NULL, NULL, NULL) == ATT_E_ARG);
    CHECK(att_write(NULL, "store", "x", "", 0, NULL, NULL) == ATT_E_ARG);
    CHECK(att_log(NULL, ATT_LOG_INFO, "x") == ATT_E_ARG);
    CHECK(strcmp(att_strerror(NULL, ATT_E_NACK), "the launcher refused the request") == 0);
    CHECK(att_nack_code(NULL) == NULL && att_chain_pem(NULL) == NULL);
    att_close(NULL);
    att_free(NULL);

    setenv("ATTESTABLE_FD", "3x", 1);
    CHECK_ST(ctx, att_init(&ctx), ATT_E_ARG);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_ARG), "ATTESTABLE_FD=\"3x\" is not a descriptor number");
    att_close(ctx);

    int spare = dup(0); /* a descriptor number that is certainly closed after this */
    close(spare);
    char text[16];
    snprintf(text, sizeof text, "%d", spare);
    setenv("ATTESTABLE_FD", text, 1);
    CHECK_ST(ctx, att_init(&ctx), ATT_E_CHANNEL);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_CHANNEL), "must be started by the attestable launcher");
    /* Arguments are checked before the channel. */
    unsigned char *out;
    size_t len;
    CHECK_ST(ctx, att_read(ctx, "Store", "sales/last", NULL, &out, &len), ATT_E_ARG);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_ARG), "must match [a-z0-9-]{1,64}");
    static const char *const bad_resources[] = {"", "/sales", "sales/", "sales//last", "sales/./x", "../x",
                                                "sales/last x", "replies/\"", "sales/\xff", "a\\b"};
    for (size_t i = 0; i < sizeof bad_resources / sizeof bad_resources[0]; i++) {
        CHECK_ST(ctx, att_read(ctx, "store", bad_resources[i], NULL, &out, &len), ATT_E_ARG);
        CHECK_CONTAINS(att_strerror(ctx, ATT_E_ARG), "the resource must be a path like \"sales/last\"");
    }
    char long_resource[514];
    memset(long_resource, 'a', 513);
    long_resource[513] = '\0';
    CHECK_ST(ctx, att_read(ctx, "store", long_resource, NULL, &out, &len), ATT_E_ARG);
    long_resource[512] = '\0'; /* 512 bytes is allowed: then the closed channel is the problem */
    CHECK_ST(ctx, att_read(ctx, "store", long_resource, NULL, &out, &len), ATT_E_CHANNEL);
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", "[1]", &out, &len), ATT_E_ARG);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_ARG), "params_json must be a JSON object");
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", "{\"a\":", &out, &len), ATT_E_ARG);
    CHECK_ST(ctx, att_write(ctx, "store", "sales", NULL, 3, NULL, NULL), ATT_E_ARG);
    CHECK_ST(ctx, att_write(ctx, "store", "sales", "x", 1, &out, NULL), ATT_E_ARG);
    CHECK_ST(ctx, att_log(ctx, (att_log_level)7, "x"), ATT_E_ARG);
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_CHANNEL);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_CHANNEL), "must be started by the attestable launcher");
    att_close(ctx);
    unsetenv("ATTESTABLE_FD");
    bool ok = h_failures == before;
    printf("%s - arguments and start-up without a launcher\n", ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}

static int child_log_not_utf8(int fd)
{
    att_ctx *ctx = child_init(fd);
    CHECK_ST(ctx, att_log(ctx, ATT_LOG_INFO, "bad \xc3\x28"), ATT_E_ARG);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_ARG), "not valid UTF-8");
    CHECK_ST(ctx, att_log(ctx, ATT_LOG_WARNING, "fatura acima de R$ 150,00 \xe2\x9c\x93"), ATT_OK);
    att_close(ctx);
    return h_failures;
}

static void parent_log_not_utf8(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    struct frame fr;
    if (h_expect(p, T_LOG, &fr))
        CHECK(fr.f[1].num == ATT_LOG_WARNING && fr.f[2].len == 29);
    h_expect_eof(p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PKI_DIR\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct h_world w;
    if (!h_world_init(&w, argv[1]))
        return 1;
    int failed = 0;
    failed += check_arguments();
    failed += h_run("HELLO, reads, writes, LOG, one SERVICE_CERT per service", &w, child_happy, parent_happy);
    failed += h_run("responses altered, misaddressed or malformed are rejected", &w, child_bad_responses,
                    parent_bad_responses);
    failed += h_run("a DATA replayed from an earlier read is rejected by nonce", &w, child_replay, parent_replay);
    failed += h_run("untrusted service certificates: nothing is sent", &w, child_bad_certs, parent_bad_certs);
    failed += h_run("NACK code and reason reach att_strerror", &w, child_nack, parent_nack);
    failed += h_run("HELLO refused", &w, child_hello_nack, parent_hello_nack);
    failed += h_run("CERT for another key", &w, child_foreign_cert, parent_foreign_cert);
    failed += h_run("unknown frame types get ERROR, the call goes on", &w, child_unknown_frames,
                    parent_unknown_frames);
    static const char *const frame_names[FRAME_COUNT] = {
        "an oversized frame closes the channel", "a malformed frame closes the channel",
        "an answer for another corr closes the channel", "an answer of the wrong type closes the channel"};
    for (int i = 0; i < FRAME_COUNT; i++) {
        current_bad_frame = (enum bad_frame)i;
        failed += h_run(frame_names[i], &w, child_bad_frame, parent_bad_frame);
    }
    failed += h_run("an ERROR answer fails the call only", &w, child_launcher_error, parent_launcher_error);
    failed += h_run("a request too large for a frame is refused before sending", &w, child_too_large,
                    parent_too_large);
    failed += h_run("the launcher closes the channel mid-call", &w, child_closed_mid_call, parent_closed_mid_call);
    failed += h_run("the launcher closes the channel mid-frame", &w, child_closed_mid_frame, parent_closed_mid_frame);
    failed += h_run("sending into a closed channel is an error, not SIGPIPE", &w, child_closed_before_send,
                    parent_closed_before_send);
    failed += h_run("LOG text must be UTF-8", &w, child_log_not_utf8, parent_log_not_utf8);
    h_world_free(&w);
    printf("%s: %d scenario(s) failed\n", failed ? "FAIL" : "PASS", failed);
    return failed ? 1 : 0;
}
