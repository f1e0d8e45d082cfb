/* Allocates 8 GiB and touches every page. */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    size_t size = (size_t)8 << 30;
    printf("TRY malloc 8 GiB\n");
    fflush(stdout);
    char *p = malloc(size);
    if (p == NULL) {
        printf("BLOCKED malloc 8 GiB: %s\n", strerror(errno));
        return 0;
    }
    for (size_t i = 0; i < size; i += 4096) p[i] = 1;
    printf("ESCAPED allocated and touched 8 GiB\n");
    return 1;
}
