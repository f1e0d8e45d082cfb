/* Spins forever; the CPU-time limit must end it. */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <stdio.h>

int main(void) {
    printf("TRY spin forever\n");
    fflush(stdout);
    volatile unsigned long n = 0;
    for (;;) n++;
}
