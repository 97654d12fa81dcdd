/* Many threads creating, binding and closing sockets at once under LD_PRELOAD, for a set
 * time: every bind must succeed, every TCP socket must have SO_REUSEADDR, and no UDP socket
 * may have it (UDP is not in the default REUSE_PROTOCOLS). Descriptor numbers are reused
 * across threads all the time, which is what the library's per-descriptor table must bear.
 *
 *   stress THREADS SECONDS PORT0
 *     thread i binds port PORT0+i on loopback, TCP for even i and UDP for odd i, IPv4 and
 *     IPv6 in turn; prints
 *       threads=N seconds=S binds=B failed=F tcp_without_reuseaddr=T udp_with_reuseaddr=U
 *
 * It lowers its own priority (nice 10) so that tests running beside it keep their timing.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct job {
    int port, udp;
    double seconds;
    long binds, failed, tcp_without, udp_with;
    int first_errno, first_v6;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *worker(void *p) {
    struct job *j = p;
    double end = now() + j->seconds;
    for (long round = 0; round < 100000000L; round++) {
        if ((round & 15) == 0 && now() >= end) break;
        int v6 = round & 1;
        int fd = socket(v6 ? AF_INET6 : AF_INET, j->udp ? SOCK_DGRAM : SOCK_STREAM, 0);
        if (fd < 0) {
            j->failed++;
            if (!j->first_errno) j->first_errno = errno;
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t len;
        memset(&ss, 0, sizeof ss);
        if (v6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(j->port);
            a->sin6_addr = in6addr_loopback;
            len = sizeof *a;
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            a->sin_family = AF_INET;
            a->sin_port = htons(j->port);
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            len = sizeof *a;
        }
        if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
            j->failed++;
            if (!j->first_errno) {
                j->first_errno = errno;
                j->first_v6 = v6;
            }
        } else {
            j->binds++;
        }
        int on = -1;
        socklen_t l = sizeof on;
        getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, &l);
        if (j->udp && on != 0) j->udp_with++;
        if (!j->udp && on != 1) j->tcp_without++;
        close(fd);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[1], "stress") != 0) {
        fprintf(stderr, "usage: stress THREADS SECONDS PORT0\n");
        return 2;
    }
    int n = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int port0 = atoi(argv[4]);
    if (n < 1 || n > 1024) return 2;
    if (nice(10) == -1 && errno != 0) perror("nice");
    pthread_t *t = calloc(n, sizeof *t);
    struct job *j = calloc(n, sizeof *j);
    for (int i = 0; i < n; i++) {
        j[i].port = port0 + i;
        j[i].udp = i & 1;
        j[i].seconds = seconds;
        if (pthread_create(&t[i], NULL, worker, &j[i]) != 0) {
            perror("pthread_create");
            return 3;
        }
    }
    long binds = 0, failed = 0, tw = 0, uw = 0;
    int first_errno = 0;
    char where[64] = "-";
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        binds += j[i].binds;
        failed += j[i].failed;
        tw += j[i].tcp_without;
        uw += j[i].udp_with;
        if (!first_errno && j[i].first_errno) {
            first_errno = j[i].first_errno;
            snprintf(where, sizeof where, "%s%s:%d", j[i].udp ? "udp" : "tcp", j[i].first_v6 ? "6" : "4",
                     j[i].port);
        }
    }
    printf("threads=%d seconds=%g binds=%ld failed=%ld tcp_without_reuseaddr=%ld "
           "udp_with_reuseaddr=%ld first_errno=%d first_failure=%s\n",
           n, seconds, binds, failed, tw, uw, first_errno, where);
    free(t);
    free(j);
    return 0;
}
