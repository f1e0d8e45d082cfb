/* Tries to read files outside the allowed paths. Prints sizes, never contents. */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH...\n", argv[0]);
        return 2;
    }
    int escaped = 0;
    for (int i = 1; i < argc; i++) {
        printf("TRY read %s\n", argv[i]);
        int fd = open(argv[i], O_RDONLY);
        if (fd < 0) {
            printf("BLOCKED open %s: %s\n", argv[i], strerror(errno));
            continue;
        }
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            printf("BLOCKED read %s: %s\n", argv[i], strerror(errno));
        } else {
            printf("ESCAPED read %zd bytes of %s\n", n, argv[i]);
            escaped = 1;
        }
        close(fd);
    }
    return escaped;
}
