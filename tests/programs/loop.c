/* Never ends on its own (sleeping, to spare the CPU): for time limits and cancel. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    printf("looping\n");
    fflush(stdout);
    for (;;)
        sleep(1);
}
