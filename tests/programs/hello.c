/* Prints its arguments to stdout, one line to stderr, and exits 3. */
#include <stdio.h>

int main(int argc, char **argv)
{
    printf("hello from %s", argv[0]);
    for (int i = 1; i < argc; i++)
        printf(" [%s]", argv[i]);
    printf("\n");
    fprintf(stderr, "a line on stderr\n");
    return 3;
}
