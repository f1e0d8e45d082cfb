/* Tries ptrace(PTRACE_ATTACH) on its own child. */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    pid_t child = fork();
    if (child < 0) {
        printf("FAILED control: fork: %s\n", strerror(errno));
        return 2;
    }
    if (child == 0) {
        for (;;) pause();
    }
    printf("TRY ptrace(PTRACE_ATTACH, %d)\n", (int)child);
    int escaped = 0;
    if (ptrace(PTRACE_ATTACH, child, NULL, NULL) != 0) {
        printf("BLOCKED ptrace: %s\n", strerror(errno));
    } else {
        printf("ESCAPED ptrace attached to %d\n", (int)child);
        escaped = 1;
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return escaped;
}
