/*
 * test_frames.c: every line of docs/vectors/channel-frames.txt through the SDK's frame codec,
 * and through the channel reader it uses on fd 3.
 *
 *   ok          decodes to exactly the listed fields; encoding them gives the same bytes;
 *               every shorter prefix is incomplete
 *   unknown     the channel answers ERROR with the listed corr and reads on
 *   malformed   the channel closes with a protocol error
 *   oversized   the channel closes with a protocol error, having read only the header
 *   incomplete  the decoder waits for more; at end of file the channel reports it closed
 *
 * Usage: test_frames VECTORS_FILE
 */
#include "harness.c"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool unhex(const char *s, size_t n, struct buf *out)
{
    if (n % 2)
        return false;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        buf_addc(out, (unsigned char)(hi << 4 | lo));
    }
    return !out->oom;
}

/* A context on one end of a socketpair, for running bytes through channel_recv. */
static att_ctx *channel_ctx(int *peer)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return NULL;
    att_ctx *ctx = new_ctx();
    ctx->fd = sv[0];
    *peer = sv[1];
    return ctx;
}

/* Checks the listed fields ("name=value" words after "type=XX") against a decoded frame. */
static void check_fields(const char *name, const struct frame *fr, char *words)
{
    unsigned i = 0;
    for (char *save = NULL, *wd = strtok_r(words, " ", &save); wd; wd = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(wd, '=');
        if (!eq) {
            fprintf(stderr, "  %s: bad field word %s\n", name, wd);
            h_failures++;
            continue;
        }
        *eq = '\0';
        const char *value = eq + 1;
        if (strcmp(wd, "type") == 0) {
            CHECK(strtoul(value, NULL, 16) == fr->type);
            continue;
        }
        if (i >= fr->layout->n || strcmp(wd, fr->layout->field[i]) != 0) {
            fprintf(stderr, "  %s: field %s is not field %u of %s\n", name, wd, i, fr->layout->name);
            h_failures++;
            return;
        }
        const struct field *f = &fr->f[i];
        if (fr->layout->kind[i] == K_U32 || fr->layout->kind[i] == K_U8) {
            if (strtoul(value, NULL, 10) != f->num) {
                fprintf(stderr, "  %s: %s is %lu, expected %s\n", name, wd, (unsigned long)f->num, value);
                h_failures++;
            }
        } else {
            struct buf want = {0};
            CHECK(unhex(value, strlen(value), &want));
            if (want.len != f->len || (f->len && memcmp(want.p, f->data, f->len) != 0)) {
                fprintf(stderr, "  %s: field %s differs\n", name, wd);
                h_failures++;
            }
            buf_free(&want);
        }
        i++;
    }
    if (i != fr->layout->n) {
        fprintf(stderr, "  %s: %u fields listed, %s has %u\n", name, i, fr->layout->name, fr->layout->n);
        h_failures++;
    }
}

static void check_ok(const char *name, const struct buf *bytes, char *fields)
{
    struct frame fr;
    size_t flen = 0;
    const char *why;
    enum verdict v = frame_decode(bytes->p, bytes->len, ATT_MAX_FRAME, &fr, &flen, &why);
    if (v != V_OK || flen != bytes->len) {
        fprintf(stderr, "  %s: verdict %d (%s), expected ok\n", name, (int)v, why ? why : "-");
        h_failures++;
        return;
    }
    check_fields(name, &fr, fields);
    struct buf again = {0};
    CHECK(frame_encode(fr.type, fr.f, ATT_MAX_FRAME, &again) == E_OK);
    CHECK(again.len == bytes->len && memcmp(again.p, bytes->p, again.len) == 0);
    buf_free(&again);
    /* A limit below the payload: refused both ways. */
    size_t plen = bytes->len - HEADER_LEN;
    if (plen > 0) {
        CHECK(frame_decode(bytes->p, bytes->len, plen - 1, &fr, &flen, &why) == V_OVERSIZED);
        frame_decode(bytes->p, bytes->len, ATT_MAX_FRAME, &fr, &flen, &why);
        struct buf small = {0};
        CHECK(frame_encode(fr.type, fr.f, plen - 1, &small) == E_TOO_LARGE);
        buf_free(&small);
    }
    for (size_t cut = 0; cut < bytes->len; cut++)
        CHECK(frame_decode(bytes->p, cut, ATT_MAX_FRAME, &fr, &flen, &why) == V_INCOMPLETE);

    /* Frames the launcher sends reach the program intact through channel_recv. */
    if (fr.type & 0x80) {
        int peer;
        att_ctx *ctx = channel_ctx(&peer);
        CHECK(write_all(peer, bytes->p, bytes->len));
        struct frame got;
        CHECK_ST(ctx, channel_recv(ctx, "test", &got), ATT_OK);
        CHECK(got.type == fr.type && got.corr == fr.corr);
        close(peer);
        att_close(ctx);
    }
}

/* The channel must answer ERROR with `corr`, then read the next frame. */
static void check_unknown(const char *name, const struct buf *bytes, const char *corr_word)
{
    struct frame fr;
    size_t flen;
    const char *why;
    unsigned long corr = strtoul(corr_word + 5, NULL, 10); /* "corr=N" */
    CHECK(strncmp(corr_word, "corr=", 5) == 0);
    enum verdict v = frame_decode(bytes->p, bytes->len, ATT_MAX_FRAME, &fr, &flen, &why);
    CHECK(v == V_UNKNOWN && fr.corr == corr && flen == bytes->len);

    int peer;
    att_ctx *ctx = channel_ctx(&peer);
    static const unsigned char ack[] = {T_ACK, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0};
    CHECK(write_all(peer, bytes->p, bytes->len) && write_all(peer, ack, sizeof ack));
    struct frame got;
    CHECK_ST(ctx, channel_recv(ctx, "test", &got), ATT_OK);
    CHECK(got.type == T_ACK);
    struct h_peer p = {peer, NULL, 0, NULL, 0};
    struct frame err;
    if (h_recv(&p, &err) == 1) {
        CHECK(err.type == T_ERROR && err.corr == corr);
    } else {
        fprintf(stderr, "  %s: no ERROR came back\n", name);
        h_failures++;
    }
    h_peer_free(&p);
    att_close(ctx);
}

/* Fatal verdicts: the channel reports `want` and closes its end. */
static void check_fatal(const char *name, const struct buf *bytes, enum verdict verdict, att_status want,
                        const char *message)
{
    struct frame fr;
    size_t flen;
    const char *why;
    enum verdict v = frame_decode(bytes->p, bytes->len, ATT_MAX_FRAME, &fr, &flen, &why);
    if (v != verdict) {
        fprintf(stderr, "  %s: verdict %d, expected %d\n", name, (int)v, (int)verdict);
        h_failures++;
    }
    int peer;
    att_ctx *ctx = channel_ctx(&peer);
    CHECK(write_all(peer, bytes->p, bytes->len));
    if (verdict == V_INCOMPLETE)
        shutdown(peer, SHUT_WR); /* nothing more will come */
    struct frame got;
    CHECK_ST(ctx, channel_recv(ctx, "test", &got), want);
    CHECK_CONTAINS(att_strerror(ctx, want), message);
    CHECK(ctx->fd == -1);
    /* The SDK closed its end: the peer sees end of file. */
    unsigned char c;
    CHECK(h_wait_readable(peer) && read(peer, &c, 1) == 0);
    close(peer);
    att_close(ctx);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s VECTORS_FILE\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lines = 0, failed = 0;
    int seen[5] = {0};
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        int before = h_failures;
        char *save = NULL;
        char *name = strtok_r(line, " ", &save);
        char *verdict = strtok_r(NULL, " ", &save);
        char *hex = strtok_r(NULL, " ", &save);
        char *rest = save ? save : "";
        struct buf bytes = {0};
        if (!name || !verdict || !hex || !unhex(hex, strlen(hex), &bytes)) {
            fprintf(stderr, "unreadable vector line %d\n", lines + 1);
            h_failures++;
        } else if (strcmp(verdict, "ok") == 0) {
            seen[V_OK]++;
            check_ok(name, &bytes, rest);
        } else if (strcmp(verdict, "unknown") == 0) {
            seen[V_UNKNOWN]++;
            check_unknown(name, &bytes, rest);
        } else if (strcmp(verdict, "malformed") == 0) {
            seen[V_MALFORMED]++;
            check_fatal(name, &bytes, V_MALFORMED, ATT_E_PROTOCOL, "malformed");
        } else if (strcmp(verdict, "oversized") == 0) {
            seen[V_OVERSIZED]++;
            check_fatal(name, &bytes, V_OVERSIZED, ATT_E_PROTOCOL, "more than the maximum of 16777216");
        } else if (strcmp(verdict, "incomplete") == 0) {
            seen[V_INCOMPLETE]++;
            check_fatal(name, &bytes, V_INCOMPLETE, ATT_E_CHANNEL, "the launcher closed the channel");
        } else {
            fprintf(stderr, "  %s: unknown verdict %s\n", name, verdict);
            h_failures++;
        }
        buf_free(&bytes);
        lines++;
        bool ok = h_failures == before;
        failed += !ok;
        printf("%s - %s %s\n", ok ? "ok" : "FAIL", verdict ? verdict : "?", name ? name : "?");
    }
    free(line);
    fclose(f);
    /* The file must exercise every verdict; an empty or truncated file is a failure. */
    for (int v = 0; v < 5; v++)
        if (seen[v] == 0) {
            fprintf(stderr, "no vector with verdict %d\n", v);
            failed++;
        }
    printf("%s: %d vector(s), %d failed\n", failed ? "FAIL" : "PASS", lines, failed);
    return failed ? 1 : 0;
}
