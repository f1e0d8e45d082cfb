/* A program that behaves: reports what it sees of its compartment, and says
 * "ready" on the channel as a well-formed LOG frame. */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int main(void) {
    char cwd[4096], host[256];
    int env_count = 0, high_fds = 0;

    for (char **e = environ; *e != NULL; e++) {
        printf("ENV %s\n", *e);
        env_count++;
    }
    for (int fd = 4; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) != -1) {
            printf("FD %d open\n", fd);
            high_fds++;
        }
    }
    if (getcwd(cwd, sizeof cwd) == NULL) strcpy(cwd, "?");
    if (gethostname(host, sizeof host) != 0) strcpy(host, "?");
    printf("PID %d\nUID %d\nGID %d\nCWD %s\nHOST %s\nENVCOUNT %d\nHIGHFDS %d\n",
           (int)getpid(), (int)getuid(), (int)getgid(), cwd, host, env_count, high_fds);

    FILE *f = fopen("output.txt", "w");
    if (f == NULL || fputs("written inside\n", f) == EOF || fclose(f) != 0) {
        printf("FAILED writing output.txt: %s\n", strerror(errno));
        return 2;
    }
    printf("OK wrote output.txt\n");

    const char *chan = getenv("ATTESTABLE_FD");
    if (chan != NULL) {
        int fd = atoi(chan);
        /* A LOG frame (docs/PROTOCOL.md): type 0x05, payload length 14,
         * corr 0, level 2 (info), text "ready". */
        static const unsigned char frame[] = {
            0x05, 0, 0, 0, 14, 0, 0, 0, 0, 2, 0, 0, 0, 5, 'r', 'e', 'a', 'd', 'y'};
        if (write(fd, frame, sizeof frame) != (ssize_t)sizeof frame) {
            printf("FAILED writing to fd %d: %s\n", fd, strerror(errno));
            return 2;
        }
        printf("OK wrote to fd %d\n", fd);
    }
    printf("hello from the sandbox\n");
    return 0;
}
