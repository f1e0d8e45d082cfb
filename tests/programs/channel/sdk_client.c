/*
 * An integration process for the channel and broker tests, built with the SDK like any
 * program the launcher compiles. It runs the steps given as arguments, one line of output
 * each, and never prints what a service told it: only SHA-256 digests, so that the tests can
 * check the plaintext arrived intact while the launcher's records stay free of it.
 *
 *   read:SERVICE:RESOURCE[:FIELD,...]  read; print the payload's digest and each field's
 *   write:SERVICE:RESOURCE:note        write {"note":"<32 random hex digits>"}
 *   write:SERVICE:RESOURCE:trip        write a taxi trip for the customer of the last read
 *                                      (the store's sales/last), printing the reply's
 *                                      taxi_plate and driver_name digests
 *   reads:SERVICE:RESOURCE:N           N reads in a row, timed: a benchmark, not a check
 *
 * Output:
 *   cert <subject>
 *   <n> read <service> ok payload=<sha256> [<field>=<sha256>]...
 *   <n> write <service> ok sent=<sha256> reply=<sha256>|none [<field>=<sha256>]...
 *   <n> <op> <service> error status=<att_status> nack=<code>|- reason=<att_strerror, one line>
 *   <n> reads <service> ok count=<N> median_us=<µs> p90_us=<µs> max_us=<µs>
 *   timing init_us=<µs of att_init: key, CSR, HELLO, certificate>
 *
 * Exit status: 0 when every step succeeded, 1 when a step failed, 2 when att_init failed.
 */
#define _POSIX_C_SOURCE 200809L
#include "attestable.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static void hex_digest(const unsigned char *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32) {
        strcpy(out, "digest-failed");
        return;
    }
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

/* The reason on one line: the proofs a NACK carries have several. */
static void print_reason(const char *reason)
{
    for (const char *p = reason; *p; p++)
        putchar(*p == '\n' || *p == '\r' ? '|' : *p);
}

static void print_error(att_ctx *ctx, int n, const char *op, const char *service, att_status st)
{
    const char *code = att_nack_code(ctx);
    printf("%d %s %s error status=%d nack=%s reason=", n, op, service, (int)st, code ? code : "-");
    print_reason(att_strerror(ctx, st));
    putchar('\n');
}

/* Prints " <field>=<sha256 of its value>" for each comma-separated field of `fields`. */
static void print_fields(const unsigned char *doc, size_t len, const char *fields)
{
    if (!fields)
        return;
    char *copy = strdup(fields);
    for (char *save = NULL, *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        char *text = NULL;
        att_json_type type = ATT_JSON_ABSENT;
        char digest[65] = "absent";
        if (att_json_get((const char *)doc, len, f, &type, &text) == ATT_OK && text)
            hex_digest((const unsigned char *)text, strlen(text), digest);
        printf(" %s=%s", f, digest);
        att_free(text);
    }
    free(copy);
}

static unsigned char *last_read;
static size_t last_read_len;

/* {"origin":…,"destination":<customer.address>,"customer_phone":<customer.phone>,…}, or NULL. */
static char *trip_request(void)
{
    char *address = NULL, *phone = NULL, *qa = NULL, *qp = NULL, *out = NULL;
    att_json_type t;
    if (!last_read || att_json_get((char *)last_read, last_read_len, "customer.address", &t, &address) != ATT_OK ||
        att_json_get((char *)last_read, last_read_len, "customer.phone", &t, &phone) != ATT_OK || !address ||
        !phone || att_json_quote(address, &qa) != ATT_OK || att_json_quote(phone, &qp) != ATT_OK)
        goto done;
    size_t n = strlen(qa) + strlen(qp) + 128;
    out = malloc(n);
    if (out)
        snprintf(out, n,
                 "{\"origin\":\"the store\",\"destination\":%s,\"customer_phone\":%s,\"fare_paid_by\":\"store\"}",
                 qa, qp);
done:
    att_free(address);
    att_free(phone);
    att_free(qa);
    att_free(qp);
    return out;
}

int main(int argc, char **argv)
{
    att_ctx *ctx = NULL;
    long long init_started = now_us();
    att_status st = att_init(&ctx);
    long long init_us = now_us() - init_started;
    if (st != ATT_OK) {
        printf("init error status=%d nack=%s reason=", (int)st,
               att_nack_code(ctx) ? att_nack_code(ctx) : "-");
        print_reason(att_strerror(ctx, st));
        putchar('\n');
        att_close(ctx);
        return 2;
    }
    printf("cert %s\n", att_certificate_subject(ctx));
    printf("timing init_us=%lld\n", init_us);
    fflush(stdout);

    int failed = 0;
    for (int n = 1; n < argc; n++) {
        char *step = strdup(argv[n]);
        char *save = NULL;
        char *op = strtok_r(step, ":", &save);
        char *service = strtok_r(NULL, ":", &save);
        char *resource = strtok_r(NULL, ":", &save);
        char *extra = strtok_r(NULL, ":", &save);
        if (!op || !service || !resource) {
            printf("%d bad step\n", n);
            failed = 1;
        } else if (strcmp(op, "read") == 0) {
            unsigned char *out = NULL;
            size_t len = 0;
            st = att_read(ctx, service, resource, NULL, &out, &len);
            if (st == ATT_OK) {
                char digest[65];
                hex_digest(out, len, digest);
                printf("%d read %s ok payload=%s", n, service, digest);
                print_fields(out, len, extra);
                putchar('\n');
                att_free(last_read);
                last_read = out;
                last_read_len = len;
            } else {
                print_error(ctx, n, op, service, st);
                failed = 1;
            }
        } else if (strcmp(op, "reads") == 0 && extra && atoi(extra) > 0) {
            int count = atoi(extra);
            long long *us = calloc((size_t)count, sizeof *us);
            int done = 0;
            for (; us && done < count; done++) {
                unsigned char *out = NULL;
                size_t len = 0;
                long long started = now_us();
                st = att_read(ctx, service, resource, NULL, &out, &len);
                us[done] = now_us() - started;
                att_free(out);
                if (st != ATT_OK)
                    break;
            }
            if (us && done == count) {
                qsort(us, (size_t)count, sizeof *us, cmp_ll);
                printf("%d reads %s ok count=%d median_us=%lld p90_us=%lld max_us=%lld\n", n, service, count,
                       us[count / 2], us[count * 9 / 10], us[count - 1]);
            } else {
                print_error(ctx, n, op, service, st);
                failed = 1;
            }
            free(us);
        } else if (strcmp(op, "write") == 0 && extra) {
            char *body = NULL;
            if (strcmp(extra, "trip") == 0) {
                body = trip_request();
            } else {
                unsigned char nonce[16];
                body = malloc(64);
                if (body && RAND_bytes(nonce, sizeof nonce) == 1) {
                    strcpy(body, "{\"note\":\"");
                    for (int i = 0; i < 16; i++)
                        sprintf(body + strlen(body), "%02x", nonce[i]);
                    strcat(body, "\"}");
                }
            }
            if (!body) {
                printf("%d write %s error status=0 nack=- reason=no request body\n", n, service);
                failed = 1;
            } else {
                unsigned char *reply = NULL;
                size_t reply_len = 0;
                st = att_write(ctx, service, resource, body, strlen(body), &reply, &reply_len);
                if (st == ATT_OK) {
                    char sent[65], got[65] = "none";
                    hex_digest((unsigned char *)body, strlen(body), sent);
                    if (reply)
                        hex_digest(reply, reply_len, got);
                    printf("%d write %s ok sent=%s reply=%s", n, service, sent, got);
                    if (reply && strcmp(extra, "trip") == 0)
                        print_fields(reply, reply_len, "taxi_plate,driver_name");
                    putchar('\n');
                } else {
                    print_error(ctx, n, op, service, st);
                    failed = 1;
                }
                att_free(reply);
                free(body);
            }
        } else {
            printf("%d bad step\n", n);
            failed = 1;
        }
        fflush(stdout);
        free(step);
    }
    att_log(ctx, ATT_LOG_INFO, "sdk_client: %d steps, %s", argc - 1, failed ? "some failed" : "all ok");
    att_free(last_read);
    att_close(ctx);
    return failed;
}
