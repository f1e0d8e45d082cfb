/*
 * integration_process.c: the case study's integration process.
 *
 * A store pays a taxi ride home for any customer whose last bill is above 150.00. Using only
 * the attestable SDK, this program reads the store's last sale; if its total is above 150.00
 * it books a taxi from the store to the customer's address, messages the customer with the
 * taxi's plate and the driver's name, and reads the customer's reply.
 *
 * Usage: integration_process [ROUNDS [PAUSE_SECONDS]]
 *   ROUNDS         how many times to look at the last sale (default 1, at most 1000)
 *   PAUSE_SECONDS  the pause between rounds, e.g. 2 or 0.5 (default 0, at most 3600)
 * Each sale is handled once: a round that finds the same last sale again books nothing.
 *
 * Exit status: 0 when every round completed (a ride booked, or none due); 1 when a step failed,
 * with the reason on stderr (the SDK's explanation, e.g. a service's denial proof); 2 for bad
 * arguments.
 *
 * Privacy: the launcher records this program's output and log, so they carry no personal
 * data. The customer's name, phone and address and the driver's name travel only inside the
 * encrypted envelopes.
 *
 * Money is a decimal string with two decimals ("189.90", docs/PROTOCOL.md, "Case-study
 * resources"), compared in integer cents, never in floating point.
 */
#define _POSIX_C_SOURCE 200809L

#include "attestable.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THRESHOLD_CENTS 15000 /* a ride is booked when the total is strictly above this */
#define STORE_NAME "Acme Store"
#define MAX_ROUNDS 1000
#define MAX_PAUSE_MS 3600000L

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

struct sale {
    long long id;
    long long total_cents;
    char *total, *currency;
    char *phone, *address; /* personal: never printed or logged */
};

struct trip {
    long long id, eta_minutes;
    char *plate;
    char *driver; /* personal: never printed or logged */
};

/* What a round did, for the outcome line. */
struct round_result {
    bool booked;
    char text[256];
};

/* ------------------------------------------------------------------------------------------ */
/* Reporting                                                                                   */

static int step_failed(att_ctx *ctx, int step, const char *what, att_status st)
{
    fprintf(stderr, "error: step %d (%s) failed: %s\n", step, what, att_strerror(ctx, st));
    if (ctx)
        att_log(ctx, ATT_LOG_ERROR, "step %d (%s) failed", step, what);
    printf("outcome: failed at step %d (%s)\n", step, what);
    return EXIT_FAILED;
}

static int bad_answer(att_ctx *ctx, int step, const char *what, const char *why)
{
    fprintf(stderr, "error: step %d (%s): the answer %s\n", step, what, why);
    att_log(ctx, ATT_LOG_ERROR, "step %d (%s): the answer %s", step, what, why);
    printf("outcome: failed at step %d (%s)\n", step, what);
    return EXIT_FAILED;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading the services' JSON answers                                                          */

/* The value at `path` if it has type `want` (a copy, free with att_free); NULL otherwise. */
static char *json_value(const unsigned char *doc, size_t len, const char *path, att_json_type want,
                        att_json_type *found)
{
    char *text = NULL;
    att_json_type type = ATT_JSON_ABSENT;
    if (att_json_get((const char *)doc, len, path, &type, &text) != ATT_OK)
        type = ATT_JSON_ABSENT;
    if (found)
        *found = type;
    if (type != want) {
        att_free(text);
        return NULL;
    }
    return text;
}

/* A non-negative JSON integer at `path`. */
static bool json_integer(const unsigned char *doc, size_t len, const char *path, long long *out)
{
    char *text = json_value(doc, len, path, ATT_JSON_NUMBER, NULL);
    bool ok = text && text[0] >= '0' && text[0] <= '9' && strlen(text) <= 18 &&
              strspn(text, "0123456789") == strlen(text);
    if (ok)
        *out = strtoll(text, NULL, 10);
    att_free(text);
    return ok;
}

/* "189.90" -> 18990. Exactly two decimals, at most 13 integer digits, no sign. */
static bool parse_cents(const char *s, long long *cents)
{
    size_t digits = strspn(s, "0123456789");
    if (digits == 0 || digits > 13 || s[digits] != '.' || strspn(s + digits + 1, "0123456789") != 2 ||
        s[digits + 3] != '\0')
        return false;
    long long whole = strtoll(s, NULL, 10);
    *cents = whole * 100 + (s[digits + 1] - '0') * 10 + (s[digits + 2] - '0');
    return true;
}

/* A customer's phone is a path segment of replies/<phone>: no '/', no control characters. */
static bool phone_usable(const char *phone)
{
    size_t n = strlen(phone);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (phone[i] == '/' || (unsigned char)phone[i] < 0x20 || phone[i] == 0x7f)
            return false;
    return true;
}

static void sale_free(struct sale *s)
{
    att_free(s->total);
    att_free(s->currency);
    att_free(s->phone);
    att_free(s->address);
    memset(s, 0, sizeof *s);
}

static void trip_free(struct trip *t)
{
    att_free(t->plate);
    att_free(t->driver);
    memset(t, 0, sizeof *t);
}

/* Parses the store's answer: {"sale_id", "total", "currency", "date", "customer": {...}}. */
static const char *parse_sale(const unsigned char *doc, size_t len, struct sale *s)
{
    att_json_type found;
    if (!json_integer(doc, len, "sale_id", &s->id))
        return "has no integer sale_id";
    s->total = json_value(doc, len, "total", ATT_JSON_STRING, &found);
    if (!s->total)
        return found == ATT_JSON_NUMBER ? "has total as a JSON number; it must be a string with two "
                                          "decimals, e.g. \"189.90\""
                                        : "has no total";
    if (!parse_cents(s->total, &s->total_cents))
        return "has a total that is not a decimal with two decimals, e.g. \"189.90\"";
    s->currency = json_value(doc, len, "currency", ATT_JSON_STRING, NULL);
    if (!s->currency)
        return "has no currency";
    s->phone = json_value(doc, len, "customer.phone", ATT_JSON_STRING, NULL);
    s->address = json_value(doc, len, "customer.address", ATT_JSON_STRING, NULL);
    if (!s->phone || !s->address)
        return "has no customer phone or address";
    if (!phone_usable(s->phone))
        return "has a customer phone that cannot name a reply (empty, too long, or with '/')";
    return NULL;
}

/* Parses the taxi's reply: {"trip_id", "taxi_plate", "driver_name", "eta_minutes"}. */
static const char *parse_trip(const unsigned char *doc, size_t len, struct trip *t)
{
    if (!json_integer(doc, len, "trip_id", &t->id))
        return "has no integer trip_id";
    t->plate = json_value(doc, len, "taxi_plate", ATT_JSON_STRING, NULL);
    t->driver = json_value(doc, len, "driver_name", ATT_JSON_STRING, NULL);
    if (!t->plate || !t->driver)
        return "has no taxi_plate or driver_name";
    if (!json_integer(doc, len, "eta_minutes", &t->eta_minutes))
        return "has no integer eta_minutes";
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* One round                                                                                   */

/* Builds a JSON object from key/value string pairs; NULL when out of memory or not UTF-8. */
static char *json_object(const char *const *pairs, size_t n)
{
    size_t cap = 2, used = 0;
    char **quoted = calloc(n, sizeof *quoted);
    char *out = NULL;
    if (!quoted)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (att_json_quote(pairs[i], &quoted[i]) != ATT_OK)
            goto done;
        cap += strlen(quoted[i]) + 1;
    }
    out = malloc(cap);
    if (!out)
        goto done;
    out[used++] = '{';
    for (size_t i = 0; i < n; i++) {
        size_t q = strlen(quoted[i]);
        memcpy(out + used, quoted[i], q);
        used += q;
        out[used++] = i + 1 == n ? '}' : i % 2 == 0 ? ':' : ',';
    }
    out[used] = '\0';
done:
    for (size_t i = 0; i < n; i++)
        att_free(quoted[i]);
    free(quoted);
    return out;
}

static int book_ride(att_ctx *ctx, const struct sale *sale, struct round_result *r)
{
    /* Step 4: the taxi. */
    const char *const trip_fields[] = {"origin", STORE_NAME, "destination", sale->address,
                                       "customer_phone", sale->phone, "fare_paid_by", STORE_NAME};
    char *trip_json = json_object(trip_fields, 8);
    if (!trip_json)
        return bad_answer(ctx, 2, "read the last sale from the store", "has customer data that is not UTF-8");
    unsigned char *reply = NULL;
    size_t len = 0;
    att_status st = att_write(ctx, "taxi", "trips", trip_json, strlen(trip_json), &reply, &len);
    free(trip_json);
    if (st != ATT_OK)
        return step_failed(ctx, 4, "book a taxi", st);
    struct trip trip = {0};
    const char *why = reply ? parse_trip(reply, len, &trip) : "is missing: the taxi service sent no reply";
    att_free(reply);
    if (why) {
        trip_free(&trip);
        return bad_answer(ctx, 4, "book a taxi", why);
    }
    printf("step 4: booked trip %lld with the taxi service: taxi %s, arriving in about %lld minutes\n", trip.id,
           trip.plate, trip.eta_minutes);
    att_log(ctx, ATT_LOG_INFO, "step 4: trip %lld booked, taxi %s", trip.id, trip.plate);

    /* Step 5: tell the customer. */
    char text[512];
    snprintf(text, sizeof text,
             "Your ride home from %s is booked: taxi %s, driver %s, arriving in about %lld minutes. "
             "Reply ACCEPT to confirm or DECLINE to cancel.",
             STORE_NAME, trip.plate, trip.driver, trip.eta_minutes);
    const char *const message_fields[] = {"phone", sale->phone, "text", text};
    char *message_json = json_object(message_fields, 4);
    if (!message_json) {
        trip_free(&trip);
        return bad_answer(ctx, 4, "book a taxi", "has a plate or driver name that is not UTF-8");
    }
    st = att_write(ctx, "messaging", "messages", message_json, strlen(message_json), &reply, &len);
    free(message_json);
    if (st != ATT_OK) {
        trip_free(&trip);
        return step_failed(ctx, 5, "message the customer", st);
    }
    long long message_id = -1;
    if (reply && !json_integer(reply, len, "message_id", &message_id)) {
        att_free(reply);
        trip_free(&trip);
        return bad_answer(ctx, 5, "message the customer", "has no integer message_id");
    }
    att_free(reply);
    if (message_id >= 0)
        printf("step 5: messaged the customer (message %lld) with the taxi's plate and the driver's name\n",
               message_id);
    else
        printf("step 5: messaged the customer with the taxi's plate and the driver's name (the launcher "
               "acknowledged; the service sent no receipt)\n");
    att_log(ctx, ATT_LOG_INFO, "step 5: customer messaged");

    /* Step 6: the customer's answer. */
    size_t rlen = strlen("replies/") + strlen(sale->phone) + 1;
    char *resource = malloc(rlen);
    if (!resource) {
        trip_free(&trip);
        return step_failed(ctx, 6, "read the customer's reply", ATT_E_NOMEM);
    }
    snprintf(resource, rlen, "replies/%s", sale->phone);
    st = att_read(ctx, "messaging", resource, NULL, &reply, &len);
    free(resource);
    if (st != ATT_OK) {
        trip_free(&trip);
        return step_failed(ctx, 6, "read the customer's reply", st);
    }
    att_json_type found;
    char *answer = json_value(reply, len, "reply", ATT_JSON_STRING, &found);
    att_free(reply);
    const char *verdict;
    if (answer && strcmp(answer, "ACCEPT") == 0)
        verdict = "the customer accepted";
    else if (answer && strcmp(answer, "DECLINE") == 0)
        verdict = "the customer declined";
    else if (found == ATT_JSON_NULL)
        verdict = "the customer has not answered yet";
    else {
        att_free(answer);
        trip_free(&trip);
        return bad_answer(ctx, 6, "read the customer's reply", "has no reply that is ACCEPT, DECLINE or null");
    }
    printf("step 6: read the customer's reply: %s\n", answer ? answer : "none yet");
    att_log(ctx, ATT_LOG_INFO, "step 6: reply %s", answer ? answer : "none yet");
    att_free(answer);
    r->booked = true;
    snprintf(r->text, sizeof r->text, "ride booked for sale %lld (trip %lld, taxi %s); %s", sale->id, trip.id,
             trip.plate, verdict);
    trip_free(&trip);
    return EXIT_OK;
}

static int run_round(att_ctx *ctx, long long *last_sale, int *last_round, int round, struct round_result *r)
{
    /* Step 2: the last sale. */
    unsigned char *doc = NULL;
    size_t len = 0;
    att_status st = att_read(ctx, "store", "sales/last", NULL, &doc, &len);
    if (st != ATT_OK)
        return step_failed(ctx, 2, "read the last sale from the store", st);
    struct sale sale = {0};
    const char *why = parse_sale(doc, len, &sale);
    att_free(doc);
    if (why) {
        sale_free(&sale);
        return bad_answer(ctx, 2, "read the last sale from the store", why);
    }
    printf("step 2: read the last sale from the store: sale %lld, total %s %s\n", sale.id, sale.total,
           sale.currency);
    att_log(ctx, ATT_LOG_INFO, "step 2: last sale %lld, total %s %s", sale.id, sale.total, sale.currency);

    /* Step 3: the rule. */
    int rc = EXIT_OK;
    if (sale.id == *last_sale) {
        printf("step 3: sale %lld was already handled in round %d: nothing to do\n", sale.id, *last_round);
        snprintf(r->text, sizeof r->text, "no new sale since round %d", *last_round);
    } else if (sale.total_cents > THRESHOLD_CENTS) {
        printf("step 3: %s is above 150.00: booking a taxi home for the customer\n", sale.total);
        rc = book_ride(ctx, &sale, r);
    } else {
        printf("step 3: %s is not above 150.00: no ride is booked\n", sale.total);
        att_log(ctx, ATT_LOG_INFO, "step 3: total not above 150.00, no ride");
        snprintf(r->text, sizeof r->text, "no ride booked: sale %lld totals %s %s, not above 150.00", sale.id,
                 sale.total, sale.currency);
    }
    if (rc == EXIT_OK && sale.id != *last_sale) {
        *last_sale = sale.id;
        *last_round = round;
    }
    sale_free(&sale);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments and main                                                                          */

static bool parse_rounds(const char *s, int *rounds)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > MAX_ROUNDS)
        return false;
    *rounds = (int)v;
    return true;
}

/* Seconds with up to three decimals ("2", "0.5") -> milliseconds. */
static bool parse_pause(const char *s, long *ms)
{
    size_t whole = strspn(s, "0123456789");
    if (whole == 0 || whole > 4)
        return false;
    long v = strtol(s, NULL, 10) * 1000;
    const char *frac = s + whole;
    if (*frac == '.') {
        size_t n = strspn(frac + 1, "0123456789");
        if (n == 0 || n > 3 || frac[1 + n] != '\0')
            return false;
        long scale = 100;
        for (size_t i = 0; i < n; i++, scale /= 10)
            v += (frac[1 + i] - '0') * scale;
    } else if (*frac != '\0') {
        return false;
    }
    if (v > MAX_PAUSE_MS)
        return false;
    *ms = v;
    return true;
}

static void pause_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

int main(int argc, char **argv)
{
    int rounds = 1;
    long pause = 0;
    if (argc > 3 || (argc > 1 && !parse_rounds(argv[1], &rounds)) || (argc > 2 && !parse_pause(argv[2], &pause))) {
        fprintf(stderr,
                "usage: %s [ROUNDS [PAUSE_SECONDS]]\n"
                "  ROUNDS         1 to %d (default 1)\n"
                "  PAUSE_SECONDS  0 to 3600, up to three decimals (default 0)\n",
                argc > 0 ? argv[0] : "integration_process", MAX_ROUNDS);
        return EXIT_USAGE;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* each step shows as it happens */

    printf("integration process: store -> taxi -> messaging (SDK %s)\n", ATT_SDK_VERSION);
    att_ctx *ctx = NULL;
    att_status st = att_init(&ctx);
    if (st != ATT_OK) {
        int rc = step_failed(ctx, 1, "get the run certificate from the launcher", st);
        att_close(ctx);
        return rc;
    }
    printf("step 1: the launcher certified this run as %s\n", att_certificate_subject(ctx));

    long long last_sale = -1;
    int last_round = 0, booked = 0, rc = EXIT_OK;
    struct round_result r = {false, ""};
    for (int round = 1; round <= rounds && rc == EXIT_OK; round++) {
        if (rounds > 1)
            printf("round %d of %d\n", round, rounds);
        r = (struct round_result){false, ""};
        rc = run_round(ctx, &last_sale, &last_round, round, &r);
        if (rc == EXIT_OK && r.booked)
            booked++;
        if (rc == EXIT_OK && round < rounds && pause > 0)
            pause_ms(pause);
    }
    if (rc == EXIT_OK) {
        if (rounds == 1)
            printf("outcome: %s\n", r.text);
        else
            printf("outcome: %d rounds, %d ride%s booked; last round: %s\n", rounds, booked, booked == 1 ? "" : "s",
                   r.text);
        att_log(ctx, ATT_LOG_INFO, "done: %d ride(s) booked", booked);
    }
    att_close(ctx);
    return rc;
}
