/* Tries to mount a tmpfs in its working folder. */
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

int main(void) {
    if (mkdir("mnt", 0700) != 0 && errno != EEXIST) {
        printf("FAILED control: mkdir mnt: %s\n", strerror(errno));
        return 2;
    }
    printf("TRY mount tmpfs on ./mnt\n");
    if (mount("none", "mnt", "tmpfs", 0, NULL) != 0) {
        printf("BLOCKED mount: %s\n", strerror(errno));
        return 0;
    }
    printf("ESCAPED mounted tmpfs\n");
    return 1;
}
