/* Micro-benchmarks the overhead runner (benches/overhead.rs) runs with and without the
 * library preloaded, alternating. Each prints one number: nanoseconds per operation.
 *
 *   bench bind N PORT     socket, bind 127.0.0.1:PORT, close; N times
 *   bench socket N        socket, close; N times
 *   bench exec N PROGRAM  posix_spawn PROGRAM and wait for it; N times (the environment,
 *                         LD_PRELOAD included, is passed on as it is)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long n = atol(argv[2]);
    double t0 = now_ns();
    if (strcmp(argv[1], "bind") == 0 && argc >= 4) {
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(atoi(argv[3]));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        for (long i = 0; i < n; i++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
            close(fd);
        }
    } else if (strcmp(argv[1], "socket") == 0) {
        for (long i = 0; i < n; i++) close(socket(AF_INET, SOCK_STREAM, 0));
    } else if (strcmp(argv[1], "exec") == 0 && argc >= 4) {
        char *args[] = {argv[3], NULL};
        for (long i = 0; i < n; i++) {
            pid_t p;
            if (posix_spawn(&p, argv[3], NULL, NULL, args, environ) != 0) return 1;
            int st;
            waitpid(p, &st, 0);
        }
    } else {
        return 2;
    }
    printf("%.1f\n", (now_ns() - t0) / n);
    return 0;
}
