/* A program whose RUNPATH ($ORIGIN/libs, set by the test's link) names where its plugin is:
 * `dlopen_runpath deep|plain PORT [NAME]` loads NAME (default "libplugin.so") by bare name,
 * twice, with or without RTLD_DEEPBIND, and calls the plugin's deep_bind(PORT)
 * (tests/c/deep.c) after each load. glibc searches the RUNPATH of dlopen's caller: this
 * program. Prints one line per try (dlerror()'s text when the load failed). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int flags = RTLD_NOW | (strcmp(argv[1], "deep") == 0 ? RTLD_DEEPBIND : 0);
    int port = atoi(argv[2]);
    for (int i = 0; i < 2; i++) {
        void *h = dlopen(argc > 3 ? argv[3] : "libplugin.so", flags);
        if (!h) {
            printf("try %d: %s\n", i, dlerror());
            continue;
        }
        int (*f)(int, int *, int *) = (int (*)(int, int *, int *))dlsym(h, "deep_bind");
        if (!f) {
            printf("try %d: no deep_bind in what was loaded\n", i);
            continue;
        }
        int reuseaddr = 0, own_dup = 0;
        int rc = f(port + i, &reuseaddr, &own_dup);
        printf("try %d: rc=%d reuseaddr=%d\n", i, rc, reuseaddr);
    }
    return 0;
}
