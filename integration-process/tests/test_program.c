/*
 * test_program.c: integration_process, the real binary, run as the launcher runs it (the channel
 * as fd 3, ATTESTABLE_FD=3, an otherwise empty environment) against the launcher and the three
 * services played by this process with the case study's data.
 *
 * Usage: test_program PROGRAM PKI_DIR   (SHOW_OUTPUT=1 prints what the program printed)
 */
#include "harness.c"

/* The customer's and driver's personal data: must never appear in what the launcher records. */
#define NAME "Ana Souza"
#define PHONE "+555599880151"
#define ADDRESS "Rua das Flores, 20"
#define DRIVER "Jo\xc3\xa3o Silva"

struct cfg {
    const char *name;
    const char *args[3]; /* program arguments */
    const char *total;   /* JSON text of the sale's "total" */
    const char *reply;   /* JSON text of the customer's "reply" */
    bool new_sale_each_read;
    const char *deny;     /* "store" or "taxi": that service refuses */
    int exit_status;
    const char *out[4];   /* lines stdout must contain */
    const char *err;      /* text stderr must contain */
    int trips, messages;  /* writes the services must have received */
};

struct seen {
    int sale_reads, trips, messages, reply_reads;
    struct buf logs; /* every LOG text */
};

static const char *program_path;

static void answer_with(struct h_peer *p, struct h_world *w, const struct frame *fr, const struct h_request *req,
                        const char *payload)
{
    h_answer(p, w, fr, req, payload);
}

static char *field_of(const struct h_request *req, const char *path)
{
    att_json_type t;
    char *text = NULL;
    if (att_json_get((const char *)req->payload, req->payload_len, path, &t, &text) != ATT_OK ||
        t != ATT_JSON_STRING) {
        att_free(text);
        return NULL;
    }
    return text;
}

static void check_field(const struct h_request *req, const char *path, const char *want)
{
    char *got = field_of(req, path);
    if (!got || strcmp(got, want) != 0) {
        fprintf(stderr, "  %s is %s, expected %s\n", path, got ? got : "(missing)", want);
        h_failures++;
    }
    att_free(got);
}

/* Plays the launcher and the services until the program closes the channel. */
static void serve(struct h_peer *p, struct h_world *w, const struct cfg *c, struct seen *seen)
{
    if (!h_hello(p, w))
        return;
    for (;;) {
        struct frame fr;
        int r = h_recv(p, &fr);
        if (r <= 0) {
            if (r < 0)
                h_failures++;
            return;
        }
        if (fr.type == T_LOG) {
            buf_add(&seen->logs, fr.f[2].data, fr.f[2].len);
            buf_addc(&seen->logs, '\n');
            continue;
        }
        if (fr.type == T_SERVICE_CERT) {
            struct h_service *s = h_service(w, (const char *)fr.f[1].data, fr.f[1].len);
            if (s)
                h_send2(p->fd, T_CERT, fr.corr, s->chain_pem, strlen(s->chain_pem));
            else
                h_send_nack(p->fd, fr.corr, "unknown_service", "no such service");
            continue;
        }
        if (fr.type != T_READ && fr.type != T_WRITE) {
            fprintf(stderr, "  unexpected frame 0x%02x from the program\n", fr.type);
            h_failures++;
            return;
        }
        struct h_request req;
        if (!h_open_frame(p, w, &fr, &req)) {
            h_failures++;
            return;
        }
        if (c->deny && strcmp(req.service, c->deny) == 0) {
            h_send_nack(p->fd, fr.corr, "service_denied",
                        "1. Key[root 3f2a9c01] is-trusted\n8. FAILED Measurement[e98a1234] is-trusted-for "
                        "read store:sales/last: no allow rule names executable e98a1234\n=> DENIED at step 8 "
                        "(measurement)");
        } else if (fr.type == T_READ && strcmp(req.resource, "sales/last") == 0) {
            seen->sale_reads++;
            char sale[512];
            snprintf(sale, sizeof sale,
                     "{\"sale_id\": %d, \"total\": %s, \"currency\": \"USD\", \"date\": \"2026-11-24T18:00:00Z\", "
                     "\"customer\": {\"name\": \"" NAME "\", \"phone\": \"" PHONE "\", \"address\": \"" ADDRESS "\"}}",
                     c->new_sale_each_read ? 40 + seen->sale_reads : 42, c->total);
            answer_with(p, w, &fr, &req, sale);
        } else if (fr.type == T_WRITE && strcmp(req.resource, "trips") == 0 && strcmp(req.service, "taxi") == 0) {
            seen->trips++;
            check_field(&req, "origin", "Acme Store");
            check_field(&req, "destination", ADDRESS);
            check_field(&req, "customer_phone", PHONE);
            check_field(&req, "fare_paid_by", "Acme Store");
            answer_with(p, w, &fr, &req,
                        "{\"trip_id\": 7, \"taxi_plate\": \"ABC1D23\", \"driver_name\": \"" DRIVER "\", \"eta_minutes\": 6}");
        } else if (fr.type == T_WRITE && strcmp(req.resource, "messages") == 0) {
            seen->messages++;
            check_field(&req, "phone", PHONE);
            char *text = field_of(&req, "text");
            CHECK_CONTAINS(text, "ABC1D23");
            CHECK_CONTAINS(text, DRIVER);
            att_free(text);
            answer_with(p, w, &fr, &req, "{\"message_id\": 3}");
        } else if (fr.type == T_READ && strcmp(req.resource, "replies/" PHONE) == 0) {
            seen->reply_reads++;
            char reply[128];
            snprintf(reply, sizeof reply, "{\"reply\": %s, \"at\": %s}", c->reply,
                     strcmp(c->reply, "null") == 0 ? "null" : "\"2026-11-24T18:05:00Z\"");
            answer_with(p, w, &fr, &req, reply);
        } else {
            fprintf(stderr, "  unexpected %s of %s:%s\n", req.op, req.service, req.resource);
            h_failures++;
            h_send_nack(p->fd, fr.corr, "service_error", "404 unknown resource");
        }
        h_request_free(&req);
    }
}

/* The whole of an unlinked temporary file, as a string. */
static char *slurp(FILE *f)
{
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    rewind(f);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(&b, chunk, n);
    buf_reserve(&b, 0);
    fclose(f);
    return (char *)buf_take(&b, NULL);
}

/* valgrind's reports start with "==PID==". */
static bool valgrind_reported(const char *s)
{
    for (const char *at = s; at && (at = strstr(at, "==")); at += 2) {
        size_t digits = strspn(at + 2, "0123456789");
        if (digits > 0 && strncmp(at + 2 + digits, "==", 2) == 0)
            return true;
    }
    return false;
}

/* Starts the program with `channel` as its fd 3 (or none when channel < 0). */
static pid_t start_program(const struct cfg *c, int channel, FILE *out, FILE *err)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Output first: a temporary file may itself be fd 3. */
    dup2(fileno(out), 1);
    dup2(fileno(err), 2);
    if (channel >= 0 && channel != 3) {
        dup2(channel, 3);
        close(channel);
    } else if (channel < 0) {
        close(3);
    }
    char *argv[5] = {(char *)program_path, NULL, NULL, NULL, NULL};
    for (int i = 0; i < 3 && c->args[i]; i++)
        argv[i + 1] = (char *)c->args[i];
    char *envp[] = {(char *)"ATTESTABLE_FD=3", NULL};
    signal(SIGPIPE, SIG_DFL);
    execve(program_path, argv, envp);
    perror("execve");
    _exit(127);
}

static int run_case(struct h_world *w, const struct cfg *c, bool with_launcher)
{
    int before = h_failures;
    FILE *out = tmpfile(), *err = tmpfile();
    int sv[2] = {-1, -1};
    if (!out || !err || (with_launcher && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)) {
        perror("setting up");
        return 1;
    }
    pid_t pid = start_program(c, with_launcher ? sv[1] : -1, out, err);
    struct seen seen = {0};
    if (with_launcher) {
        close(sv[1]);
        struct h_peer p = {sv[0], NULL, 0, NULL, 0};
        serve(&p, w, c, &seen);
        h_peer_free(&p);
    }
    int status = h_child_exit_status(pid);
    char *stdout_text = slurp(out), *stderr_text = slurp(err);
    buf_reserve(&seen.logs, 0);
    const char *logs = seen.logs.p ? (char *)seen.logs.p : "";

    if (status != c->exit_status) {
        fprintf(stderr, "  exit status %d, expected %d\n", status, c->exit_status);
        h_failures++;
    }
    for (int i = 0; i < 4 && c->out[i]; i++)
        CHECK_CONTAINS(stdout_text, c->out[i]);
    if (c->err)
        CHECK_CONTAINS(stderr_text, c->err);
    else
        CHECK(stderr_text && stderr_text[0] == '\0');
    CHECK(!valgrind_reported(stderr_text));
    CHECK(seen.trips == c->trips);
    CHECK(seen.messages == c->messages);
    /* Nothing personal in what the launcher would record: output, errors, log. */
    static const char *const personal[] = {NAME, PHONE, ADDRESS, DRIVER};
    for (int i = 0; i < 4; i++) {
        if ((stdout_text && strstr(stdout_text, personal[i])) || (stderr_text && strstr(stderr_text, personal[i])) ||
            strstr(logs, personal[i])) {
            fprintf(stderr, "  personal data \"%s\" in the program's output or log\n", personal[i]);
            h_failures++;
        }
    }
    bool ok = h_failures == before;
    if (getenv("SHOW_OUTPUT"))
        printf("  --- %s: exit %d ---\n%s%s", c->name, status, stdout_text ? stdout_text : "",
               stderr_text ? stderr_text : "");
    if (!ok)
        fprintf(stderr, "  --- stdout ---\n%s  --- stderr ---\n%s  --- log ---\n%s", stdout_text ? stdout_text : "",
                stderr_text ? stderr_text : "", logs);
    free(stdout_text);
    free(stderr_text);
    buf_free(&seen.logs);
    printf("%s - %s\n", ok ? "ok" : "FAIL", c->name);
    fflush(stdout);
    return ok ? 0 : 1;
}

static const struct cfg CASES[] = {
    {"a total above 150.00 books a ride; the customer accepts", {NULL}, "\"189.90\"", "\"ACCEPT\"", false, NULL, 0,
     {"step 1: the launcher certified this run as O=test program, CN=run-1",
      "step 2: read the last sale from the store: sale 42, total 189.90 USD",
      "step 4: booked trip 7 with the taxi service: taxi ABC1D23, arriving in about 6 minutes",
      "outcome: ride booked for sale 42 (trip 7, taxi ABC1D23); the customer accepted\n"},
     NULL, 1, 1},
    {"150.00 exactly books nothing", {NULL}, "\"150.00\"", "\"ACCEPT\"", false, NULL, 0,
     {"step 3: 150.00 is not above 150.00: no ride is booked",
      "outcome: no ride booked: sale 42 totals 150.00 USD, not above 150.00\n"},
     NULL, 0, 0},
    {"150.01 books a ride", {NULL}, "\"150.01\"", "\"ACCEPT\"", false, NULL, 0,
     {"step 3: 150.01 is above 150.00", "outcome: ride booked for sale 42"}, NULL, 1, 1},
    {"the customer declines", {NULL}, "\"9218.50\"", "\"DECLINE\"", false, NULL, 0,
     {"step 6: read the customer's reply: DECLINE", "; the customer declined\n"}, NULL, 1, 1},
    {"the customer has not answered", {NULL}, "\"189.90\"", "null", false, NULL, 0,
     {"step 6: read the customer's reply: none yet", "; the customer has not answered yet\n"}, NULL, 1, 1},
    {"the store denies: exit 1 with the proof", {NULL}, "\"189.90\"", "\"ACCEPT\"", false, "store", 1,
     {"outcome: failed at step 2 (read the last sale from the store)\n"},
     "the launcher refused (service_denied): 1. Key[root 3f2a9c01] is-trusted\n8. FAILED Measurement", 0, 0},
    {"the taxi denies: no message is sent", {NULL}, "\"189.90\"", "\"ACCEPT\"", false, "taxi", 1,
     {"outcome: failed at step 4 (book a taxi)\n"}, "error: step 4 (book a taxi) failed: write taxi:trips", 0, 0},
    {"a total that is a JSON number is refused", {NULL}, "189.90", "\"ACCEPT\"", false, NULL, 1,
     {"outcome: failed at step 2"}, "has total as a JSON number", 0, 0},
    {"a total with one decimal is refused", {NULL}, "\"189.9\"", "\"ACCEPT\"", false, NULL, 1,
     {"outcome: failed at step 2"}, "not a decimal with two decimals", 0, 0},
    {"three rounds, one sale: one ride", {"3", "0.001", NULL}, "\"189.90\"", "\"ACCEPT\"", false, NULL, 0,
     {"round 3 of 3", "step 3: sale 42 was already handled in round 1: nothing to do",
      "outcome: 3 rounds, 1 ride booked; last round: no new sale since round 1\n"},
     NULL, 1, 1},
    {"two rounds, two sales: two rides", {"2", NULL}, "\"189.90\"", "\"ACCEPT\"", true, NULL, 0,
     {"sale 41, total", "sale 42, total",
      "outcome: 2 rounds, 2 rides booked; last round: ride booked for sale 42 (trip 7, taxi ABC1D23)"},
     NULL, 2, 2},
};

static const struct cfg USAGE[] = {
    {"rounds 0 is a usage error", {"0", NULL}, NULL, NULL, false, NULL, 2, {NULL}, "usage:", 0, 0},
    {"rounds abc is a usage error", {"abc", NULL}, NULL, NULL, false, NULL, 2, {NULL}, "usage:", 0, 0},
    {"a negative pause is a usage error", {"1", "-1", NULL}, NULL, NULL, false, NULL, 2, {NULL}, "usage:", 0, 0},
    {"a pause with four decimals is a usage error", {"1", "0.0001", NULL}, NULL, NULL, false, NULL, 2, {NULL}, "usage:", 0, 0},
    {"too many arguments", {"1", "1", "1"}, NULL, NULL, false, NULL, 2, {NULL}, "usage:", 0, 0},
};

static const struct cfg NO_LAUNCHER = {
    "started without the launcher: exit 1, saying so", {NULL}, NULL, NULL, false, NULL, 1,
    {"outcome: failed at step 1 (get the run certificate from the launcher)\n"},
    "must be started by the attestable launcher", 0, 0};

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PROGRAM PKI_DIR\n", argv[0]);
        return 2;
    }
    program_path = argv[1];
    signal(SIGPIPE, SIG_IGN);
    struct h_world w;
    if (!h_world_init(&w, argv[2]))
        return 1;
    int failed = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        failed += run_case(&w, &CASES[i], true);
    for (size_t i = 0; i < sizeof USAGE / sizeof USAGE[0]; i++)
        failed += run_case(&w, &USAGE[i], false);
    failed += run_case(&w, &NO_LAUNCHER, false);
    h_world_free(&w);
    printf("%s: %d case(s) failed\n", failed ? "FAIL" : "PASS", failed);
    return failed ? 1 : 0;
}
