/*
 * Floods the channel (fd 3) and never reads an answer, for the fault tests: a program that
 * does this must block only itself (docs/PROTOCOL.md, "Rules" 10) while the launcher goes on
 * serving everyone else. One mode per run:
 *
 *   requests   READ frames (corr 1, 2, ...) before HELLO; each is answered NACK hello_required
 *   unknown    frames of an unknown type (0x42); each is answered ERROR
 *   log        LOG frames of 4 KiB; they have no answer
 *
 * It prints "flooding <mode>" and then "sent <n> frames" every 4096 frames, until a write
 * blocks for good (the launcher stopped reading) or the launcher stops it at its time limit.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int send_all(const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(3, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    static unsigned char frame[5 + 4 + 1 + 4 + 4096];
    size_t len;
    if (strcmp(mode, "requests") == 0) {
        /* READ: corr, service "store", resource "sales", request of 4 bytes. */
        static const unsigned char fields[] = {0, 0, 0, 5, 's', 't', 'o', 'r', 'e', 0, 0, 0, 5,
                                               's', 'a', 'l', 'e', 's', 0, 0, 0, 4, 1, 2, 3, 4};
        frame[0] = 0x02;
        be32(frame + 1, 4 + sizeof fields);
        memcpy(frame + 9, fields, sizeof fields);
        len = 9 + sizeof fields;
    } else if (strcmp(mode, "unknown") == 0) {
        frame[0] = 0x42;
        be32(frame + 1, 4 + 16);
        memset(frame + 9, 'x', 16);
        len = 9 + 16;
    } else if (strcmp(mode, "log") == 0) {
        frame[0] = 0x05;
        be32(frame + 1, 4 + 1 + 4 + 4096);
        be32(frame + 5, 0);
        frame[9] = 2;
        be32(frame + 10, 4096);
        memset(frame + 14, 'L', 4096);
        len = 14 + 4096;
    } else {
        fprintf(stderr, "usage: flood requests|unknown|log\n");
        return 64;
    }
    printf("flooding %s\n", mode);
    fflush(stdout);
    for (uint32_t n = 1;; n++) {
        if (frame[0] != 0x05)
            be32(frame + 5, n); /* a fresh correlation id each time */
        if (send_all(frame, len) != 0) {
            printf("write failed after %u frames\n", n - 1);
            return 1;
        }
        if (n % 4096 == 0) {
            printf("sent %u frames\n", n);
            fflush(stdout);
        }
    }
}
