/* Must not compile in a confined build, and the error must not show the file. */
static const char leaked[] = {
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include "/etc/passwd"
};

int main(void) { return (int)sizeof leaked; }
