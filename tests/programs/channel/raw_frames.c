/*
 * Speaks the channel by hand, without the SDK, to show what the launcher does with frames a
 * program should not send (docs/PROTOCOL.md, "Rules" 7 and 8). One mode per run:
 *
 *   unknown     an unknown frame type (0x42, corr 5), then READ before HELLO: prints each
 *               answer ("ERROR corr=5 ...", "NACK corr=9 hello_required ...") and exits 0
 *   malformed   a READ whose first field runs past the end of the payload, then waits
 *   oversized   a header announcing 16 MiB + 1 bytes, then waits
 *
 * After a fatal frame it waits (pause) for the launcher to stop it: the run must end as
 * protocol_error, not by the program's own exit or at its time limit.
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

static int recv_all(unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(3, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads one answer and prints its type, corr and str fields. */
static int print_answer(void)
{
    unsigned char header[5], payload[4096];
    if (recv_all(header, 5) != 0)
        return -1;
    uint32_t len = be32(header + 1);
    if (len > sizeof payload || len < 4 || recv_all(payload, len) != 0)
        return -1;
    const char *name = header[0] == 0xEE ? "ERROR" : header[0] == 0xE1 ? "NACK" : "OTHER";
    printf("%s corr=%u", name, (unsigned)be32(payload));
    for (uint32_t off = 4; off + 4 <= len;) {
        uint32_t n = be32(payload + off);
        off += 4;
        if (n > len - off)
            break;
        printf(" %.*s", (int)n, (const char *)payload + off);
        off += n;
    }
    printf("\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "unknown") == 0) {
        static const unsigned char unknown[] = {0x42, 0, 0, 0, 5, 0, 0, 0, 5, 'x'};
        /* READ corr 9: service "store", resource "sales", empty request. */
        static const unsigned char read_frame[] = {0x02, 0, 0, 0, 26, 0, 0, 0, 9, 0, 0, 0, 5, 's', 't', 'o', 'r',
                                                   'e', 0, 0, 0, 5, 's', 'a', 'l', 'e', 's', 0, 0, 0, 0};
        if (send_all(unknown, sizeof unknown) != 0 || print_answer() != 0)
            return 1;
        if (send_all(read_frame, sizeof read_frame) != 0 || print_answer() != 0)
            return 1;
        return 0;
    }
    if (strcmp(mode, "malformed") == 0) {
        static const unsigned char bad[] = {0x02, 0, 0, 0, 13, 0, 0, 0, 1, 0, 0, 0, 99, 's', 't', 'o', 'r', 'e'};
        if (send_all(bad, sizeof bad) != 0)
            return 1;
    } else if (strcmp(mode, "oversized") == 0) {
        static const unsigned char big[] = {0x03, 0x01, 0x00, 0x00, 0x01};
        if (send_all(big, sizeof big) != 0)
            return 1;
    } else {
        fprintf(stderr, "usage: raw_frames unknown|malformed|oversized\n");
        return 64;
    }
    printf("sent a %s frame\n", mode);
    fflush(stdout);
    for (;;)
        pause();
}
