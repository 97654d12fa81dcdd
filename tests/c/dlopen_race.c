/* Threads that load a library with dlopen(RTLD_NOW | RTLD_DEEPBIND) and unload it again,
 * over and over, for SECONDS: `dlopen_race PLUGIN OTHER SECONDS DEPENDENCY` first loads
 * DEPENDENCY (so PLUGIN's NEEDED name is found loaded), then one thread loops on PLUGIN and
 * one on OTHER, an unrelated library whose file has the same name as PLUGIN's dependency
 * and many relocations. Prints "done". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *paths[2];
static int seconds;

static void *loop(void *arg) {
    const char *path = paths[(long)arg];
    time_t end = time(0) + seconds;
    for (long n = 0; n < 100000000L && time(0) < end; n++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_DEEPBIND);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            exit(3);
        }
        dlclose(h);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    paths[0] = argv[1];
    paths[1] = argv[2];
    seconds = atoi(argv[3]);
    if (!dlopen(argv[4], RTLD_NOW)) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, loop, (void *)i);
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    puts("done");
    return 0;
}
