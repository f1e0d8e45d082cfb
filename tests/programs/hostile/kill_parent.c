/* Sends SIGCONT (harmless to a running process) to PID, the launcher. */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PID\n", argv[0]);
        return 2;
    }
    pid_t target = (pid_t)atol(argv[1]);
    int escaped = 0;
    printf("TRY kill(%d, SIGCONT)\n", (int)target);
    if (kill(target, SIGCONT) != 0) {
        printf("BLOCKED kill(%d): %s\n", (int)target, strerror(errno));
    } else {
        printf("ESCAPED kill(%d) delivered\n", (int)target);
        escaped = 1;
    }
    pid_t parent = getppid();
    printf("TRY kill(getppid() = %d, SIGCONT)\n", (int)parent);
    if (parent == 0) {
        printf("BLOCKED kill(getppid()): no parent visible\n");
    } else if (kill(parent, SIGCONT) != 0) {
        printf("BLOCKED kill(getppid()): %s\n", strerror(errno));
    } else {
        printf("ESCAPED kill(getppid() = %d) delivered\n", (int)parent);
        escaped = 1;
    }
    return escaped;
}
