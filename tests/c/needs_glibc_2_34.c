/* A library that needs GLIBC_2.34 (dlsym moved into libc there), as libreuse once did:
 * tests/install.rs shows that `reuse run` will not preload it into a program on an older
 * glibc, where the loader would stop the program. */
#define _GNU_SOURCE
#include <dlfcn.h>

void *needs_new_dlsym(void) { return dlsym(RTLD_DEFAULT, "getpid"); }
