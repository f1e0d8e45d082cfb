/* Compile with -DSECRET_PATH='"<data>/api-token"' (or the database). Must not
 * compile in a confined build, and the error must not show the file. */
#ifndef SECRET_PATH
#error "define SECRET_PATH"
#endif
static const char leaked[] = {
#define _GNU_SOURCE /* for the system interfaces these programs abuse */
#include SECRET_PATH
};

int main(void) { return (int)sizeof leaked; }
