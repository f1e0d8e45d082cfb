/* Writes in its working folder (must work), then outside it (must not). */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int write_file(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    ssize_t n = write(fd, "pwned\n", 6);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == 6 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH\n", argv[0]);
        return 2;
    }
    if (write_file("inside.txt") != 0) {
        printf("FAILED control: writing inside.txt in the working folder: %s\n", strerror(errno));
        return 2;
    }
    printf("OK wrote inside.txt\n");
    printf("TRY write %s\n", argv[1]);
    if (write_file(argv[1]) != 0) {
        printf("BLOCKED write %s: %s\n", argv[1], strerror(errno));
        return 0;
    }
    printf("ESCAPED wrote %s\n", argv[1]);
    return 1;
}
