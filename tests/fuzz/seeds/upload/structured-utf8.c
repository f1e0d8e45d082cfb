utf8.c/* héllo → ✓ */
