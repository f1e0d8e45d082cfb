/* Tries to create namespaces of its own. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

static int try_unshare(int flag, const char *name) {
    printf("TRY unshare(%s)\n", name);
    if (unshare(flag) != 0) {
        printf("BLOCKED unshare(%s): %s\n", name, strerror(errno));
        return 0;
    }
    printf("ESCAPED unshare(%s)\n", name);
    return 1;
}

int main(void) {
    int escaped = 0;
    escaped |= try_unshare(CLONE_NEWUSER, "CLONE_NEWUSER");
    escaped |= try_unshare(CLONE_NEWNS, "CLONE_NEWNS");
    escaped |= try_unshare(CLONE_NEWNET, "CLONE_NEWNET");
    return escaped;
}
