/*
 * bench_envelope.c: each envelope operation of the C SDK, timed alone (no channel, no network):
 * sign (SignedData), encrypt (AuthEnvelopedData, ECDH + AES-256-GCM), decrypt, verify, with the
 * SDK's own flags, then the SDK's seal_request (sign + encrypt) and open_response (decrypt +
 * verify) themselves. Keys and certificates are throwaway P-256 ones made here. Prints one line
 * per operation, its samples in microseconds, for the benchmark (tests/src/bin/bench) to
 * summarise; asserts nothing about time.
 *
 * Usage: bench_envelope [ITERATIONS] [PAYLOAD_BYTES]
 * Built by the benchmark: cc -std=c11 -O2 -I integration-process bench_envelope.c -lcrypto
 */
#include "../tests/harness.c"

/* harness.c includes the SDK, which names the services anchor compiled into each program. */
const char att_services_anchor_pem[] = "";

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void print_samples(const char *name, const double *v, int n)
{
    printf("%s", name);
    for (int i = 0; i < n; i++)
        printf("%c%.2f", i ? ',' : ' ', v[i]);
    putchar('\n');
}

static void die(const char *what)
{
    fprintf(stderr, "bench_envelope: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

#define SDK_FLAGS (CMS_BINARY | CMS_NOCERTS | CMS_NOSMIMECAP)

static void sign(EVP_PKEY *key, X509 *cert, const struct buf *body, struct buf *out)
{
    BIO *in = BIO_new_mem_buf(body->p, (int)body->len);
    CMS_ContentInfo *sd = CMS_sign(NULL, NULL, NULL, NULL, SDK_FLAGS | CMS_PARTIAL);
    if (!in || !sd || !CMS_add1_signer(sd, cert, key, EVP_sha256(), SDK_FLAGS) ||
        !CMS_final(sd, in, NULL, SDK_FLAGS) || !cms_to_der(sd, out))
        die("sign");
    CMS_ContentInfo_free(sd);
    BIO_free(in);
}

static void encrypt(X509 *to, const EVP_CIPHER *gcm, const struct buf *data, struct buf *out)
{
    BIO *in = BIO_new_mem_buf(data->p, (int)data->len);
    STACK_OF(X509) *recips = sk_X509_new_null();
    CMS_ContentInfo *env = NULL;
    if (!in || !recips || !sk_X509_push(recips, to) ||
        !(env = CMS_encrypt(recips, in, gcm, CMS_BINARY)) || !cms_to_der(env, out))
        die("encrypt");
    CMS_ContentInfo_free(env);
    sk_X509_free(recips);
    BIO_free(in);
}

static void decrypt(EVP_PKEY *key, X509 *cert, const struct buf *der, struct buf *out)
{
    CMS_ContentInfo *env = cms_from_der(der->p, der->len);
    BIO *plain = BIO_new(BIO_s_mem());
    char *p;
    if (!env || !plain || CMS_decrypt(env, key, cert, NULL, plain, CMS_BINARY) != 1)
        die("decrypt");
    long n = BIO_get_mem_data(plain, &p);
    buf_add(out, p, (size_t)n);
    BIO_free(plain);
    CMS_ContentInfo_free(env);
}

static void verify(X509 *signer_cert, const struct buf *der)
{
    CMS_ContentInfo *sd = cms_from_der(der->p, der->len);
    BIO *content = BIO_new(BIO_s_mem());
    STACK_OF(X509) *signer = sk_X509_new_null();
    if (!sd || !content || !signer || !sk_X509_push(signer, signer_cert) ||
        CMS_verify(sd, signer, NULL, NULL, content, CMS_BINARY | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY) != 1)
        die("verify");
    sk_X509_free(signer);
    BIO_free(content);
    CMS_ContentInfo_free(sd);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    int size = argc > 2 ? atoi(argv[2]) : 512;
    if (n < 1 || size < 1) {
        fprintf(stderr, "usage: %s [ITERATIONS] [PAYLOAD_BYTES]\n", argv[0]);
        return 2;
    }
    EVP_PKEY *ca_key = h_keygen(), *run_key = h_keygen(), *svc_key = h_keygen();
    X509 *ca = ca_key ? h_issue(NULL, ca_key, ca_key, "bench", "bench CA", &H_CA) : NULL;
    X509 *run = ca ? h_issue(ca, ca_key, run_key, "bench", "run-1", &H_LEAF) : NULL;
    X509 *svc = ca ? h_issue(ca, ca_key, svc_key, "bench", "store", &H_LEAF) : NULL;
    EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    att_ctx *ctx = new_ctx();
    if (!run || !svc || !gcm || !ctx)
        die("setting up keys and certificates");
    /* What att_init leaves in the context, without a launcher. */
    ctx->key = run_key;
    ctx->cert = run;
    ctx->aes_gcm = gcm;

    struct buf body = {0};
    for (int i = 0; i < size; i++)
        buf_addc(&body, (unsigned char)('a' + i % 26));
    double *v = calloc((size_t)n, sizeof *v);
    if (!v || body.oom)
        die("allocating");

    struct buf signed_der = {0}, env_der = {0}, tmp = {0};
    sign(run_key, run, &body, &signed_der);
    encrypt(svc, gcm, &signed_der, &env_der);

    for (int i = 0; i < n; i++) {
        tmp.len = 0;
        double t = now_us();
        sign(run_key, run, &body, &tmp);
        v[i] = now_us() - t;
    }
    print_samples("sign", v, n);
    for (int i = 0; i < n; i++) {
        tmp.len = 0;
        double t = now_us();
        encrypt(svc, gcm, &signed_der, &tmp);
        v[i] = now_us() - t;
    }
    print_samples("encrypt", v, n);
    for (int i = 0; i < n; i++) {
        tmp.len = 0;
        double t = now_us();
        decrypt(svc_key, svc, &env_der, &tmp);
        v[i] = now_us() - t;
    }
    print_samples("decrypt", v, n);
    for (int i = 0; i < n; i++) {
        double t = now_us();
        verify(run, &signed_der);
        v[i] = now_us() - t;
    }
    print_samples("verify", v, n);

    /* The SDK's functions: a request sealed to the service, an answer sealed to the run. */
    for (int i = 0; i < n; i++) {
        tmp.len = 0;
        double t = now_us();
        if (seal_request(ctx, "bench", svc, &body, &tmp) != ATT_OK)
            die("seal_request");
        v[i] = now_us() - t;
    }
    print_samples("sdk-seal-request", v, n);
    struct buf answer = {0};
    buf_add(&answer, body.p, body.len);
    buf_addc(&answer, '\0');
    struct buf sealed_answer = {0};
    if (!h_seal(svc_key, svc, run, (const char *)answer.p, &sealed_answer))
        die("sealing an answer");
    for (int i = 0; i < n; i++) {
        tmp.len = 0;
        double t = now_us();
        if (open_response(ctx, "bench", "store", svc, sealed_answer.p, sealed_answer.len, &tmp) != ATT_OK)
            die("open_response");
        v[i] = now_us() - t;
    }
    print_samples("sdk-open-response", v, n);

    free(v);
    buf_free(&body);
    buf_free(&answer);
    buf_free(&sealed_answer);
    buf_free(&signed_der);
    buf_free(&env_der);
    buf_free(&tmp);
    ctx->key = NULL;
    ctx->cert = NULL;
    ctx->aes_gcm = NULL;
    att_close(ctx);
    EVP_CIPHER_free(gcm);
    X509_free(run);
    X509_free(svc);
    X509_free(ca);
    EVP_PKEY_free(run_key);
    EVP_PKEY_free(svc_key);
    EVP_PKEY_free(ca_key);
    return 0;
}
