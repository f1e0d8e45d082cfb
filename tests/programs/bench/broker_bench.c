/*
 * A benchmark program, built with the SDK like any program the launcher compiles: certifies
 * itself (att_init), waits until a common start time so that concurrent runs overlap, then
 * makes COUNT brokered calls in a row and prints each one's latency. Asserts nothing about time.
 *
 *   broker_bench read  SERVICE RESOURCE COUNT START_UNIX_MS
 *   broker_bench write SERVICE RESOURCE COUNT START_UNIX_MS    (writes a message to +15550100311)
 *
 * START_UNIX_MS 0 starts at once. One line of output:
 *   bench op=<op> n=<COUNT> init_us=<att_init> late_us=<µs past the start time, 0 if on time>
 *         start_ms=<unix ms of the first call> end_ms=<unix ms after the last>
 *         cpu_us=<this process's CPU time over the calls> lat_us=<a,b,…>
 * Exit status: 0 when every call succeeded, 1 when one failed (its reason on stderr), 2 for
 * bad arguments or a failed att_init.
 */
#define _POSIX_C_SOURCE 200809L
#include "attestable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long now_us(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Sleeps until CLOCK_REALTIME reaches `unix_ms`; how late it was (µs), 0 when on time. */
static long long wait_until(long long unix_ms)
{
    long long now = now_us(CLOCK_REALTIME), at = unix_ms * 1000;
    if (unix_ms <= 0 || now >= at)
        return unix_ms <= 0 ? 0 : now - at;
    struct timespec ts = {(time_t)(at / 1000000), (long)(at % 1000000) * 1000};
    while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[1], "read") && strcmp(argv[1], "write"))) {
        fprintf(stderr, "usage: %s read|write SERVICE RESOURCE COUNT START_UNIX_MS\n", argv[0]);
        return 2;
    }
    const int write = !strcmp(argv[1], "write");
    const char *service = argv[2], *resource = argv[3];
    int count = atoi(argv[4]);
    long long start_ms = atoll(argv[5]);
    long long *lat = count > 0 ? calloc((size_t)count, sizeof *lat) : NULL;
    if (!lat) {
        fprintf(stderr, "COUNT must be a positive number\n");
        return 2;
    }

    att_ctx *ctx = NULL;
    long long t0 = now_us(CLOCK_MONOTONIC);
    att_status st = att_init(&ctx);
    long long init_us = now_us(CLOCK_MONOTONIC) - t0;
    if (st != ATT_OK) {
        fprintf(stderr, "att_init: %s\n", att_strerror(ctx, st));
        att_close(ctx);
        free(lat);
        return 2;
    }

    long long late = wait_until(start_ms);
    long long first = now_us(CLOCK_REALTIME), cpu = now_us(CLOCK_PROCESS_CPUTIME_ID);
    int failed = 0;
    for (int i = 0; i < count && !failed; i++) {
        char payload[128];
        int n = snprintf(payload, sizeof payload,
                         "{\"phone\":\"+15550100311\",\"text\":\"benchmark message %d\"}", i);
        unsigned char *answer = NULL;
        size_t len = 0;
        long long t = now_us(CLOCK_MONOTONIC);
        st = write ? att_write(ctx, service, resource, payload, (size_t)n, &answer, &len)
                   : att_read(ctx, service, resource, NULL, &answer, &len);
        lat[i] = now_us(CLOCK_MONOTONIC) - t;
        att_free(answer);
        if (st != ATT_OK) {
            fprintf(stderr, "call %d: %s\n", i + 1, att_strerror(ctx, st));
            failed = 1;
        }
    }
    long long last = now_us(CLOCK_REALTIME);
    cpu = now_us(CLOCK_PROCESS_CPUTIME_ID) - cpu;

    if (!failed) {
        printf("bench op=%s n=%d init_us=%lld late_us=%lld start_ms=%lld.%03lld end_ms=%lld.%03lld cpu_us=%lld lat_us=",
               argv[1], count, init_us, late, first / 1000, first % 1000, last / 1000, last % 1000, cpu);
        for (int i = 0; i < count; i++)
            printf(i ? ",%lld" : "%lld", lat[i]);
        putchar('\n');
    }
    att_close(ctx);
    free(lat);
    return failed;
}
