/*
 * Brokered reads in a loop, for the load tests: one attested read after another of
 * SERVICE:RESOURCE through the launcher, for SECONDS seconds, each timed.
 *
 *   reader SERVICE RESOURCE SECONDS
 *
 * Output (stdout):
 *   reads ok=<n> failed=<n>
 *   latencies_us <µs> <µs> ...        every read that succeeded, in order
 *   error status=<att_status> nack=<code>|- reason=<one line>     for the first failure, if any
 *
 * Exit status: 0 when every read succeeded, 1 when one failed, 2 when att_init failed.
 */
#define _POSIX_C_SOURCE 200809L
#include "attestable.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void print_error(att_ctx *ctx, att_status st)
{
    const char *code = att_nack_code(ctx);
    printf("error status=%d nack=%s reason=", (int)st, code ? code : "-");
    for (const char *p = att_strerror(ctx, st); *p; p++)
        putchar(*p == '\n' || *p == '\r' ? '|' : *p);
    putchar('\n');
}

int main(int argc, char **argv)
{
    if (argc != 4 || atoi(argv[3]) <= 0) {
        fprintf(stderr, "usage: reader SERVICE RESOURCE SECONDS\n");
        return 64;
    }
    att_ctx *ctx = NULL;
    att_status st = att_init(&ctx);
    if (st != ATT_OK) {
        print_error(ctx, st);
        att_close(ctx);
        return 2;
    }
    long long end = now_us() + (long long)atoi(argv[3]) * 1000000;
    size_t cap = 1024, ok = 0, failed = 0;
    long long *us = malloc(cap * sizeof *us);
    att_status first = ATT_OK;
    char first_reason[512] = "";
    const char *first_nack = NULL;
    while (us && now_us() < end) {
        unsigned char *out = NULL;
        size_t len = 0;
        long long started = now_us();
        st = att_read(ctx, argv[1], argv[2], NULL, &out, &len);
        long long took = now_us() - started;
        att_free(out);
        if (st != ATT_OK) {
            if (failed++ == 0) {
                first = st;
                first_nack = att_nack_code(ctx);
                snprintf(first_reason, sizeof first_reason, "%s", att_strerror(ctx, st));
            }
            continue;
        }
        if (ok == cap) {
            long long *bigger = realloc(us, 2 * cap * sizeof *us);
            if (!bigger)
                break;
            us = bigger;
            cap *= 2;
        }
        us[ok++] = took;
    }
    printf("reads ok=%zu failed=%zu\nlatencies_us", ok, failed);
    for (size_t i = 0; i < ok; i++)
        printf(" %lld", us[i]);
    putchar('\n');
    if (failed) {
        printf("error status=%d nack=%s reason=", (int)first, first_nack ? first_nack : "-");
        for (const char *p = first_reason; *p; p++)
            putchar(*p == '\n' || *p == '\r' ? '|' : *p);
        putchar('\n');
    }
    free(us);
    att_close(ctx);
    return failed ? 1 : 0;
}
