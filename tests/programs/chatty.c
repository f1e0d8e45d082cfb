/* Writes 2 MiB to stdout and 2 MiB to stderr: output capture must stay bounded. */
#include <stdio.h>
#include <string.h>

int main(void)
{
    static char line[1024];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 2] = '\n';
    for (int i = 0; i < 2048; i++) {
        fputs(line, stdout);
        fputs(line, stderr);
    }
    return 0;
}
