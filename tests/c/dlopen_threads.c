/* Threads that each load their own library with dlopen(RTLD_NOW | RTLD_DEEPBIND), call its
 * deep_bind(), and unload it, over and over, all at once: `dlopen_threads DIR THREADS ROUNDS`
 * loads DIR/libthreadN.so. Each library has thousands of relocations, so one thread's loader
 * is still relocating its library while another thread's dlopen has returned. Prints "done". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_barrier_t start;
static const char *dir;
static int rounds;

static void *run(void *arg) {
    long i = (long)arg;
    char path[4096];
    snprintf(path, sizeof path, "%s/libthread%ld.so", dir, i);
    pthread_barrier_wait(&start);
    for (int k = 0; k < rounds; k++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_DEEPBIND);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            exit(3);
        }
        int (*f)(void) = (int (*)(void))dlsym(h, "thread_bind");
        if (!f || f() != 0) {
            fprintf(stderr, "thread_bind failed\n");
            exit(4);
        }
        dlclose(h);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    dir = argv[1];
    int n = atoi(argv[2]);
    rounds = atoi(argv[3]);
    if (n < 1 || n > 64) return 2;
    pthread_t t[64];
    pthread_barrier_init(&start, 0, n);
    for (long i = 0; i < n; i++) pthread_create(&t[i], 0, run, (void *)i);
    for (int i = 0; i < n; i++) pthread_join(t[i], 0);
    puts("done");
    return 0;
}
