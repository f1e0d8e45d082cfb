/* Leaves a child behind and never ends: the launcher must kill the whole group. */
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

int main(void)
{
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        for (;;)
            sleep(1);
    }
    printf("child %ld\n", (long)child);
    fflush(stdout);
    for (;;)
        sleep(1);
}
