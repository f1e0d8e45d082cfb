/* Tries a DNS lookup. */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "example.com";
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    printf("TRY getaddrinfo(%s)\n", name);
    int rc = getaddrinfo(name, "443", &hints, &res);
    if (rc != 0) {
        printf("BLOCKED getaddrinfo(%s): %s\n", name, gai_strerror(rc));
        return 0;
    }
    printf("ESCAPED getaddrinfo(%s) resolved\n", name);
    freeaddrinfo(res);
    return 1;
}
