/* Forks until the system refuses, reports once, then waits to be killed. */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    pid_t first = getpid();
    long forks = 0;
    printf("TRY fork bomb\n");
    fflush(stdout);
    for (;;) {
        pid_t pid = fork();
        if (pid < 0) {
            if (getpid() == first) {
                printf("BLOCKED fork after %ld forks: %s\n", forks, strerror(errno));
                fflush(stdout);
            }
            for (;;) pause();
        }
        if (pid > 0) forks++;
        /* Parent and child both carry on forking. */
    }
}
