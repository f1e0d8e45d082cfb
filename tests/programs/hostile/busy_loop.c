/* Spins forever; the CPU-time limit must end it. */
#include <stdio.h>

int main(void) {
    printf("TRY spin forever\n");
    fflush(stdout);
    volatile unsigned long n = 0;
    for (;;) n++;
}
