/* A library loaded with dlopen(RTLD_DEEPBIND) by `probe deepbind`: it makes a TCP socket and
 * binds it itself, so its `socket` and `bind` resolve in its own scope (libc) first. It also
 * defines a `dup` of its own, which must stay its own. Built twice by the tests: with lazy
 * binding and partial RELRO, and with -z now and full RELRO. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int dup(int fd) { (void)fd; return -4242; }

int deep_bind(int port, int *reuseaddr, int *own_dup) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    int v = 0;
    socklen_t l = sizeof v;
    getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &l);
    *reuseaddr = v != 0;
    *own_dup = dup(fd) == -4242;
    close(fd);
    return rc;
}
