/* A library whose constructor binds a TCP socket and loads a library, preloaded after
 * libreuse.so (LD_PRELOAD="libreuse.so early_bind.so"): the loader runs this constructor
 * before libreuse's, so the bind and the dlopen reach the library before its own constructor
 * has run. It prints "early rc=R errno=E reuseaddr=N dlopen=ok|NULL". The port comes from
 * EARLY_PORT; errno is set to 4242 before the bind, which must leave it so on success. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void early(void) {
    const char *p = getenv("EARLY_PORT");
    if (!p) return;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(p));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    errno = 4242;
    int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    int v = 0;
    socklen_t l = sizeof v;
    getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &l);
    void *h = dlopen("libm.so.6", RTLD_NOW);
    printf("early rc=%d errno=%d reuseaddr=%d dlopen=%s\n", rc, e, v != 0, h ? "ok" : "NULL");
    fflush(stdout);
    close(fd);
}
