/* Tries a TCP connection to a listener on 127.0.0.1:PORT. */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    printf("TRY connect to 127.0.0.1:%d\n", port);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
        printf("BLOCKED socket(AF_INET): %s\n", strerror(errno));
        return 0;
    }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        printf("BLOCKED connect: %s\n", strerror(errno));
        return 0;
    }
    printf("ESCAPED connected to 127.0.0.1:%d\n", port);
    return 1;
}
