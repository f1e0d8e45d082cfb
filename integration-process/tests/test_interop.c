/*
 * test_interop.c: the SDK's envelopes against another CMS implementation, the openssl command
 * line, which is also what operators use to open envelopes (docs/PROTOCOL.md). Driven by
 * tests/interop.sh:
 *
 *   test_interop make DIR   writes a run key and certificate, a store key and certificate, and
 *                           DIR/request.der: a read request sealed by the SDK for the store
 *                           (DIR/request.json is its body, DIR/response.json the answer the
 *                           store should give)
 *   test_interop open DIR   opens DIR/response.der (made by `openssl cms`) with the SDK as an
 *                           answer to that request, and checks its payload
 *
 * The keys are throwaway test keys, written mode 0600 inside the build folder.
 */
#include "harness.c"

#include <sys/stat.h>

static const char PAYLOAD[] = "{\"sale_id\":42,\"total\":\"189.90\"}";

static bool write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mode_t old = umask(077);
    FILE *f = fopen(path, "wb");
    umask(old);
    bool ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok)
        perror(path);
    return ok;
}

static bool read_file(const char *dir, const char *name, struct buf *out)
{
    char path[512], chunk[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return false;
    }
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(out, chunk, n);
    fclose(f);
    return !out->oom;
}

static bool write_key(const char *dir, const char *name, EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *p;
    bool ok = bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    long n = ok ? BIO_get_mem_data(bio, &p) : 0;
    ok = ok && write_file(dir, name, p, (size_t)n);
    BIO_free(bio);
    return ok;
}

static bool write_cert(const char *dir, const char *name, X509 *x)
{
    char *pem = cert_to_pem(x);
    bool ok = pem && write_file(dir, name, pem, strlen(pem));
    free(pem);
    return ok;
}

static bool read_key(const char *dir, const char *name, EVP_PKEY **key)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return (*key = h_read_key(path)) != NULL;
}

static bool read_cert(const char *dir, const char *name, X509 **x)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return (*x = h_read_cert(path)) != NULL;
}

/* A context holding a run key and certificate, as att_init leaves it (without a channel). */
static att_ctx *offline_ctx(EVP_PKEY *key, X509 *cert)
{
    att_ctx *ctx = new_ctx();
    ctx->key = key;
    ctx->cert = cert;
    ctx->aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    return ctx;
}

static int make(const char *dir, struct h_world *w)
{
    EVP_PKEY *run_key = h_keygen();
    X509 *run = h_issue(w->inter, w->inter_key, run_key, "test program", "run-1", &H_LEAF);
    struct h_service *store = &w->svc[0];
    att_ctx *ctx = offline_ctx(run_key, run);
    struct buf body = {0}, envelope = {0};
    buf_adds(&body, "{\"v\":1,\"op\":\"read\",\"service\":\"store\",\"resource\":\"sales/last\","
                    "\"nonce\":\"5f3c9a0e12b4478c9d0e6a1b2c3d4e5f\",\"timestamp\":1795548840,\"payload\":\"\"}");
    char *response = h_response_body("5f3c9a0e12b4478c9d0e6a1b2c3d4e5f", "store", "sales/last", "ok", PAYLOAD,
                                     strlen(PAYLOAD));
    CHECK_ST(ctx, seal_request(ctx, "interop", store->cert, &body, &envelope), ATT_OK);
    CHECK(write_file(dir, "request.der", envelope.p, envelope.len));
    CHECK(write_file(dir, "request.json", body.p, body.len));
    CHECK(response && write_file(dir, "response.json", response, strlen(response)));
    CHECK(write_cert(dir, "run.pem", run) && write_key(dir, "run.key", run_key));
    CHECK(write_cert(dir, "store.pem", store->cert) && write_key(dir, "store.key", store->key));
    free(response);
    buf_free(&body);
    buf_free(&envelope);
    att_close(ctx); /* frees run_key and run */
    return h_failures;
}

static int open_response_file(const char *dir)
{
    EVP_PKEY *run_key = NULL;
    X509 *run = NULL, *store = NULL;
    struct buf der = {0}, body = {0}, payload = {0};
    if (!read_key(dir, "run.key", &run_key) || !read_cert(dir, "run.pem", &run) ||
        !read_cert(dir, "store.pem", &store) || !read_file(dir, "response.der", &der)) {
        fprintf(stderr, "interop: run `test_interop make` first\n");
        EVP_PKEY_free(run_key);
        X509_free(run);
        X509_free(store);
        return 1;
    }
    att_ctx *ctx = offline_ctx(run_key, run);
    CHECK_ST(ctx, open_response(ctx, "interop", "store", store, der.p, der.len, &body), ATT_OK);
    CHECK_ST(ctx,
             check_response(ctx, "interop", &body, "5f3c9a0e12b4478c9d0e6a1b2c3d4e5f", "store", "sales/last", 5,
                            &payload),
             ATT_OK);
    CHECK(payload.len == strlen(PAYLOAD) && memcmp(payload.p, PAYLOAD, payload.len) == 0);
    buf_free(&der);
    buf_free(&body);
    buf_free(&payload);
    X509_free(store);
    att_close(ctx);
    return h_failures;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "make") != 0 && strcmp(argv[1], "open") != 0)) {
        fprintf(stderr, "usage: %s make|open DIR PKI_DIR\n", argv[0]);
        return 2;
    }
    int failed;
    if (strcmp(argv[1], "make") == 0) {
        struct h_world w;
        if (!h_world_init(&w, argv[3]))
            return 1;
        failed = make(argv[2], &w);
        h_world_free(&w);
    } else {
        failed = open_response_file(argv[2]);
    }
    printf("%s - interop %s\n", failed ? "FAIL" : "ok", argv[1]);
    return failed ? 1 : 0;
}
