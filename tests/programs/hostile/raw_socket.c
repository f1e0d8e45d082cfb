/* Tries to open sockets of families other than AF_UNIX, and AF_UNIX datagram
 * sockets (which could sendto() a host socket such as /dev/log by its path). */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int try_socket(int family, int type, const char *name) {
    printf("TRY socket(%s)\n", name);
    int s = socket(family, type, 0);
    if (s < 0) {
        printf("BLOCKED socket(%s): %s\n", name, strerror(errno));
        return 0;
    }
    printf("ESCAPED socket(%s) = %d\n", name, s);
    close(s);
    return 1;
}

static int try_pair(int type, const char *name) {
    printf("TRY socketpair(%s)\n", name);
    int sv[2];
    if (socketpair(AF_UNIX, type, 0, sv) < 0) {
        printf("BLOCKED socketpair(%s): %s\n", name, strerror(errno));
        return 0;
    }
    printf("ESCAPED socketpair(%s)\n", name);
    close(sv[0]);
    close(sv[1]);
    return 1;
}

int main(void) {
    int escaped = 0;
    escaped |= try_socket(AF_INET, SOCK_STREAM, "AF_INET, SOCK_STREAM");
    escaped |= try_socket(AF_INET, SOCK_DGRAM, "AF_INET, SOCK_DGRAM");
    escaped |= try_socket(AF_INET6, SOCK_STREAM, "AF_INET6, SOCK_STREAM");
    escaped |= try_socket(AF_NETLINK, SOCK_RAW, "AF_NETLINK, SOCK_RAW");
    escaped |= try_socket(AF_PACKET, SOCK_RAW, "AF_PACKET, SOCK_RAW");
    escaped |= try_socket(AF_UNIX, SOCK_DGRAM, "AF_UNIX, SOCK_DGRAM");
    escaped |= try_socket(AF_UNIX, SOCK_RAW, "AF_UNIX, SOCK_RAW");
    escaped |= try_pair(SOCK_DGRAM, "AF_UNIX, SOCK_DGRAM");
    escaped |= try_pair(SOCK_RAW, "AF_UNIX, SOCK_RAW");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0) {
        printf("FAILED control: socket(AF_UNIX, SOCK_STREAM): %s\n", strerror(errno));
        return 2;
    }
    close(s);
    printf("OK socket(AF_UNIX, SOCK_STREAM)\n");
    return escaped;
}
