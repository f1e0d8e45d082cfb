/*
 * bench_sdk.c: what the SDK's cryptography costs, both ends included, with no network: att_init
 * (key generation, CSR, certificate issue by the in-process launcher) and att_read round trips
 * against the in-process store (the SDK signs and encrypts; the store decrypts, verifies, signs
 * and encrypts; the SDK decrypts and verifies). Prints medians; asserts nothing about time.
 *
 * Usage: bench_sdk PKI_DIR [READS]
 */
#include "harness.c"

static int reads = 500;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    printf("%-48s median %.3f ms  p90 %.3f ms  (n=%d)\n", what, v[n / 2], v[n * 9 / 10], n);
}

static int child_bench(int fd)
{
    double t0 = now_ms();
    att_ctx *ctx = NULL;
    CHECK_ST(ctx, att_init_fd(&ctx, fd), ATT_OK);
    double init = now_ms() - t0;
    double *lat = calloc((size_t)reads + 1, sizeof *lat);
    double first = 0;
    for (int i = 0; i <= reads && lat; i++) {
        unsigned char *out;
        size_t len;
        double t = now_ms();
        CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_OK);
        double d = now_ms() - t;
        if (i == 0)
            first = d; /* includes SERVICE_CERT and the certificate's verification */
        else
            lat[i - 1] = d;
        att_free(out);
    }
    printf("att_init (keygen, CSR, HELLO, CERT)               %.3f ms (one run)\n", init);
    printf("first att_read (+ SERVICE_CERT and its checks)    %.3f ms (one run)\n", first);
    if (lat)
        report("att_read round trip, all cryptography", lat, reads);
    free(lat);
    att_close(ctx);
    return h_failures;
}

static void parent_bench(struct h_peer *p, struct h_world *w)
{
    if (!h_hello(p, w))
        return;
    h_service_cert(p, w, "store", NULL);
    for (int i = 0; i <= reads; i++) {
        struct frame fr;
        struct h_request req;
        if (!h_take_request(p, w, T_READ, &fr, &req))
            return;
        h_answer(p, w, &fr, &req, "{\"sale_id\":42,\"total\":\"189.90\"}");
        h_request_free(&req);
    }
    h_expect_eof(p);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PKI_DIR [READS]\n", argv[0]);
        return 2;
    }
    if (argc == 3)
        reads = atoi(argv[2]) > 0 ? atoi(argv[2]) : reads;
    signal(SIGPIPE, SIG_IGN);
    struct h_world w;
    if (!h_world_init(&w, argv[1]))
        return 1;
    int failed = h_run("benchmark", &w, child_bench, parent_bench);
    h_world_free(&w);
    return failed;
}
