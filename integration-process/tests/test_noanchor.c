/*
 * test_noanchor.c: a program built with an empty services anchor (att_services_anchor_pem is
 * "") trusts no service: reads and writes fail with a message saying why, before anything is
 * asked of the launcher. Usage: test_noanchor PKI_DIR
 */
#include "harness.c"

static int child_no_anchor(int fd)
{
    att_ctx *ctx = NULL;
    CHECK_ST(ctx, att_init_fd(&ctx, fd), ATT_OK);
    unsigned char *out = NULL;
    size_t len = 0;
    CHECK_ST(ctx, att_read(ctx, "store", "sales/last", NULL, &out, &len), ATT_E_SERVICE_CERT);
    CHECK_CONTAINS(att_strerror(ctx, ATT_E_SERVICE_CERT), "no services trust anchor is compiled into this program");
    CHECK_ST(ctx, att_write(ctx, "taxi", "trips", "{}", 2, NULL, NULL), ATT_E_SERVICE_CERT);
    CHECK(out == NULL && len == 0);
    att_close(ctx);
    return h_failures;
}

static void parent_no_anchor(struct h_peer *p, struct h_world *w)
{
    if (h_hello(p, w))
        h_expect_eof(p); /* no SERVICE_CERT, no READ, no WRITE */
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
    CHECK(att_services_anchor_pem[0] == '\0');
    int failed = h_run("an empty anchor trusts no service", &w, child_no_anchor, parent_no_anchor);
    h_world_free(&w);
    printf("%s\n", failed ? "FAIL" : "PASS");
    return failed ? 1 : 0;
}
