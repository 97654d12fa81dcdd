/* A library whose constructor sets REUSE_OPTIONS from SET_REUSE_OPTIONS (and adds a variable
 * of its own, so that glibc makes a new environment array), preloaded after libreuse.so:
 * the loader runs this constructor before libreuse's, which must see what it set. */
#include <stdlib.h>

__attribute__((constructor)) static void set_options(void) {
    const char *v = getenv("SET_REUSE_OPTIONS");
    if (!v) return;
    setenv("ENV_SETTER_WAS_HERE", "1", 1);
    setenv("REUSE_OPTIONS", v, 1);
}
