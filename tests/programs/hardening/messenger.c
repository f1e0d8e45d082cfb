/*
 * Attested writes one after another, for the crash tests of a service: sends COUNT messages
 * to messaging:messages, and prints a line for each one the service acknowledged, so that
 * the test knows exactly which writes were committed before the service was killed. A write
 * that fails (the service is down or restarting) is tried again, with a new message, after
 * 20 ms.
 *
 *   messenger PHONE TAG COUNT
 *
 * Each message is {"phone": PHONE, "text": "TAG <n>"}. Output (stdout), one line each:
 *   ack <n> id=<message_id>       message "TAG <n>" was acknowledged as that message
 *   fail <n> nack=<code>|- reason=<one line>
 * Exit status 0 once COUNT messages were acknowledged; 2 when att_init failed.
 */
#define _POSIX_C_SOURCE 200809L
#include "attestable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    if (argc != 4 || atoi(argv[3]) <= 0) {
        fprintf(stderr, "usage: messenger PHONE TAG COUNT\n");
        return 64;
    }
    att_ctx *ctx = NULL;
    att_status st = att_init(&ctx);
    if (st != ATT_OK) {
        printf("init failed: %s\n", att_strerror(ctx, st));
        att_close(ctx);
        return 2;
    }
    char *phone = NULL;
    if (att_json_quote(argv[1], &phone) != ATT_OK)
        return 64;
    int count = atoi(argv[3]), acked = 0;
    for (int n = 1; acked < count; n++) {
        char text[256], *quoted = NULL, body[512];
        snprintf(text, sizeof text, "%s %d", argv[2], n);
        if (att_json_quote(text, &quoted) != ATT_OK)
            return 64;
        snprintf(body, sizeof body, "{\"phone\":%s,\"text\":%s}", phone, quoted);
        att_free(quoted);
        unsigned char *reply = NULL;
        size_t reply_len = 0;
        st = att_write(ctx, "messaging", "messages", body, strlen(body), &reply, &reply_len);
        if (st == ATT_OK) {
            char *id = NULL;
            att_json_type type = ATT_JSON_ABSENT;
            acked++;
            if (reply && att_json_get((const char *)reply, reply_len, "message_id", &type, &id) == ATT_OK && id)
                printf("ack %d id=%s\n", n, id);
            else
                printf("ack %d id=-\n", n);
            att_free(id);
        } else {
            const char *code = att_nack_code(ctx);
            printf("fail %d nack=%s reason=", n, code ? code : "-");
            for (const char *p = att_strerror(ctx, st); *p; p++)
                putchar(*p == '\n' || *p == '\r' ? '|' : *p);
            putchar('\n');
            struct timespec pause = {0, 20 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        att_free(reply);
        fflush(stdout);
    }
    att_free(phone);
    att_close(ctx);
    return 0;
}
